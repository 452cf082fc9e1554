"""Delegation between agents over Matrix: send, track, recover, deliver exactly once.

Agent A delegates to B by sending ``com.salon.delegation.request`` as A's user
into B's room; B answers with ``com.salon.delegation.status`` events in the same
room. Every outbound delegation is a row in the store before its request is
sent (with a transaction id derived from the delegation id, so a re-send after
a crash is one event). The outcome reaches A once: into the waiting turn if it
is still running in this process (every call with the same delegation id shares
that one waiter), otherwise (after a restart, say) through ``report``, which
starts a ledgered report turn of A; the result counts as delivered only when
that turn has closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog

from salon import responses
from salon._exceptions import ForbiddenError, MatrixError, is_transient
from salon.agents.context import waiting_on_others
from salon.agents.tools import DelegationOutcome
from salon.coordination.directory import Directory
from salon.coordination.heartbeat import AGENT_STATE, AgentStatus, effective_status, parse_state
from salon.coordination.protocol import (
    REQUEST,
    DelegationRequest,
    DelegationState,
    new_request,
    parse_status,
    request_content,
)
from salon.coordination.records import outcome_of, record_of, request_of, stable_id
from salon.coordination.recovery import statuses_of
from salon.coordination.refs import labels_of
from salon.ids import RoomAlias, RoomId, server_of_user
from salon.matrix.api import MatrixAPI
from salon.matrix.delivery import Delivery
from salon.matrix.events import InboundEvent
from salon.matrix.membership import join_or_be_invited
from salon.matrix.txn import txn_id
from salon.metrics import EVENTS_DROPPED
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationPhase, DelegationRecord
from salon.store.records import now_ms

log = structlog.get_logger("salon.coordination")

OUT = DelegationDirection.OUT
Report = Callable[[DelegationRecord, DelegationOutcome], Awaitable[None]]
MARKER = "com.salon.delegation"


class DelegationManager:
    """Outbound delegations of our agents, and the status events that answer them."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        *,
        can_delegate_to: Mapping[str, Sequence[str]],
        descriptions: Mapping[str, str],
        deadline_s: float = 300.0,
        locale: str = "en",
    ) -> None:
        self.store = store
        self.dir = directory
        self.can_delegate_to = can_delegate_to
        self.descriptions = descriptions
        self.deadline_s = deadline_s
        self.locale = locale
        # Sends made for a running turn wait out homeserver outages (same txn id).
        self.delivery = Delivery()
        self.report: Report | None = None
        self._waiting: dict[str, asyncio.Future[DelegationOutcome]] = {}
        self._waiters: dict[str, int] = {}  # how many calls wait on each future
        self._room_cache: dict[str, RoomId] = {}
        # Told before an agent joins or posts in another agent's room (the gateway's
        # visits: a leave of that room under way ends first, and the visit is kept).
        self.on_visit: Callable[[str, RoomId], Awaitable[None]] | None = None

    # --- sending -------------------------------------------------------------

    def targets(self, agent_id: str) -> list[tuple[str, str]]:
        """Agents ``agent_id`` may delegate to, with their descriptions."""
        return [(a, self.descriptions.get(a, "")) for a in self.can_delegate_to.get(agent_id, ())]

    async def delegate(
        self,
        from_agent: str,
        to_agent: str,
        task: str,
        *,
        context: str | None = None,
        origin_room: str | None = None,
        origin_event: str | None = None,
        parent: DelegationRequest | None = None,
        wait: bool = True,
        for_user: str | None = None,
    ) -> DelegationOutcome:
        """Send a delegation and (with ``wait``) return its outcome; failures are outcomes.

        ``for_user``: the person the work is for, as the gateway knows it from the turn
        that asks (never from the task's text); a child of ``parent`` keeps the parent's.
        """
        if to_agent not in self.can_delegate_to.get(from_agent, ()):
            return DelegationOutcome(
                False, f"[NOT ALLOWED] {from_agent} may not delegate to {to_agent}"
            )
        api = self.dir.apis[from_agent]
        # A turn re-run after a crash asks again: the same question gets the same id,
        # so it finds the delegation it made before instead of making a second one.
        same_id = stable_id(origin_event, from_agent, to_agent, task) if origin_event else None
        if same_id and wait and same_id in self._waiting:
            # The same call twice in one round: both wait for the one delegation.
            return await self._await(same_id, self._waiting[same_id])
        if same_id and (known := await self.store.delegations.get(same_id)) is not None:
            return await self._resume(known, wait)
        try:
            try:
                room = await self._target_room(from_agent, api, to_agent)
            except ForbiddenError:  # a peer's room its gateway has not opened to us
                log.info("delegation.peer_room_closed", to_agent=to_agent)
                return DelegationOutcome(False, f"[OFFLINE] {to_agent}")
            if not await self._online(api, room, to_agent):
                return DelegationOutcome(False, f"[OFFLINE] {to_agent}")
            request = new_request(
                from_agent,
                to_agent,
                task,
                context=context,
                parent=parent,
                deadline_ts=now_ms() + int(self.deadline_s * 1000),
                id=same_id,
                for_user=for_user,
            )
        except (MatrixError, ValueError) as e:
            if not wait and is_transient(e):
                raise  # a command in the inbox: it is tried again later, never blocks it
            return DelegationOutcome(False, f"[FAILED] {to_agent}: {e}")
        record = record_of(request, OUT, room, origin_room=origin_room, origin_event=origin_event)
        await self.store.delegations.create(record)
        future = self._waiter(record.id) if wait else None
        try:
            # A turn waits out an outage; a command (no wait) must not hold the inbox up:
            # its transient failure is raised, the row is kept and sent again later.
            await self._send_request(api, record, request, wait=wait)
            await self.notify(record, "delegation_sent", task=_short(task))
            if future is None:
                return DelegationOutcome(True, record.id)
            return await self._await(record.id, future)
        except MatrixError as e:
            if not wait and is_transient(e):
                raise
            await self.store.delegations.set_state(record.id, DelegationPhase.FAILED, error=str(e))
            await self.store.delegations.mark_reinjected(record.id)  # the caller gets it now
            failed = DelegationOutcome(False, f"[FAILED] {to_agent}: {e}")
            self._settle(record.id, failed)  # a twin call waiting on it gets it too
            return failed

    def _waiter(self, id: str) -> asyncio.Future[DelegationOutcome]:
        """The one future every waiter of delegation ``id`` shares (shielded when awaited,
        so one cancelled caller does not cancel it for the others)."""
        future = self._waiting.get(id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[id] = future
        return future

    async def _await(self, id: str, future: asyncio.Future[DelegationOutcome]) -> DelegationOutcome:
        """Wait for delegation ``id``'s outcome with the others who wait for it. When the
        last of them gives up (stopped, deadline), the waiter goes, so a result arriving
        later is reported instead of handed to nobody."""
        self._waiters[id] = self._waiters.get(id, 0) + 1
        try:
            async with waiting_on_others():  # the turn's slots are free for the wait
                return await asyncio.shield(future)
        finally:
            self._waiters[id] -= 1
            if not self._waiters[id]:
                del self._waiters[id]
                if not future.done() and self._waiting.get(id) is future:
                    del self._waiting[id]

    def _settle(self, id: str, outcome: DelegationOutcome) -> bool:
        """Hand ``outcome`` to the waiters of ``id`` (if any); True if someone waited."""
        future = self._waiting.pop(id, None)
        if future is None or future.done():
            return False
        future.set_result(outcome)
        return True

    async def _resume(self, record: DelegationRecord, wait: bool) -> DelegationOutcome:
        """The outcome of a delegation made before (by this turn, before a restart)."""
        if record.terminal:
            await self.store.delegations.mark_reinjected(record.id)
            return outcome_of(record)
        if record.state is DelegationPhase.PENDING:
            api = self.dir.apis[record.from_agent]
            await self._send_request(api, record, request_of(record), wait=wait)
            await self.notify(record, "delegation_sent", task=_short(record.task))
        if not wait:
            return DelegationOutcome(True, record.id)
        future = self._waiter(record.id)
        # It may have ended while we were not looking.
        current = await self.store.delegations.get(record.id)
        if current is not None and current.terminal:
            await self.store.delegations.mark_reinjected(record.id)
            self._settle(record.id, outcome_of(current))
            return outcome_of(current)
        return await self._await(record.id, future)

    async def _send_request(
        self,
        api: MatrixAPI,
        record: DelegationRecord,
        request: DelegationRequest,
        *,
        wait: bool = False,
    ) -> None:
        """Send the request (``wait``: through an outage, for a turn that waits anyway)."""
        room, content = RoomId(record.target_room), request_content(request)
        txn = txn_id(record.id, record.from_agent, "request")
        if wait:
            event_id = await self.delivery.send(api, room, REQUEST, content, txn_id=txn)
        else:
            event_id = await api.send_event(room, REQUEST, content, txn_id=txn)
        await self.store.delegations.set_request_event(record.id, event_id)
        log.info("delegation.sent", id=record.id, frm=record.from_agent, to=record.to_agent)

    async def _target_room(self, from_agent: str, api: MatrixAPI, agent: str) -> RoomId:
        room = self.dir.rooms.get(agent) or self._room_cache.get(agent)
        alias = self.dir.roster.member(agent).room_alias
        if room is None:
            room, _ = await api.resolve_alias(RoomAlias(alias))
            self._room_cache[agent] = room
        if self.on_visit is not None:
            await self.on_visit(from_agent, room)
        if room not in await api.joined_rooms():
            # Agents visit each other's rooms to delegate: invited there, they join on
            # their first delegation (a visitor that never delegates costs nothing).
            # Not invited (added since, or left at a start): the target, if hosted
            # here, invites; a peer's room only the peer can open.
            via = [server_of_user(alias.replace("#", "@", 1))]
            await join_or_be_invited(api, room, self.dir.apis.get(agent), via)
        return room

    async def _online(self, api: MatrixAPI, room: RoomId, agent: str) -> bool:
        if agent in self.dir.apis:
            # Hosted here, so running: its heartbeat may not be out yet (the first
            # beats after a start wait behind the replies), and says no more anyway.
            return True
        content = await api.get_state_event(room, AGENT_STATE, self.dir.user_id(agent))
        return effective_status(parse_state(content)) is not AgentStatus.OFFLINE

    # --- answers ----------------------------------------------------------------

    async def on_status(self, event: InboundEvent) -> None:
        """A status event in a target room: update the delegation, deliver its end once."""
        status = parse_status(event.content)
        if status is None:
            return
        record = await self.store.delegations.get(status.id, direction=OUT)
        if record is None:
            return  # someone else's delegation
        if event.sender != self.dir.user_id(record.to_agent):
            EVENTS_DROPPED.labels(reason="delegation_forged").inc()
            log.warning("delegation.status_forged", id=status.id, sender=event.sender)
            return
        changed = await self.store.delegations.set_state(
            record.id, status.state.value, result=status.result, error=status.error
        )
        if changed:
            if status.state is DelegationState.ACCEPTED:
                await self.notify(record, "delegation_accepted")
            elif status.state is DelegationState.COMPLETED:
                await self.notify(record, "delegation_completed")
            elif status.state in (DelegationState.FAILED, DelegationState.REJECTED):
                await self.notify(record, "delegation_failed", error=status.error or "")
        # A replay after a crash delivers what the first pass stored but did not hand back;
        # a late answer after the deadline was recorded and is not delivered again.
        current = await self.store.delegations.get(record.id, direction=OUT)
        if current is not None and current.terminal and not current.reinjected:
            await self._deliver(current, outcome_of(current))

    async def _deliver(self, record: DelegationRecord, outcome: DelegationOutcome) -> None:
        """Hand the outcome back once: to the waiting turn, else through a report turn."""
        if record.id in self._waiting:
            await self.store.delegations.mark_reinjected(record.id)
            self._settle(record.id, outcome)
            return
        if record.origin_event and await self._turn_open(record):
            return  # the delegating turn is being re-run: it collects the outcome itself
        if self.report is not None:
            # Marked delivered when the report turn closes, not before.
            await self.report(record, outcome)

    async def deliver_late(self, record: DelegationRecord) -> None:
        """Report a result whose delegating turn closed without taking it."""
        if record.id not in self._waiting and self.report is not None:
            await self.report(record, outcome_of(record))

    async def deliver_undelivered(self) -> None:
        """After a start: results that ended but were never handed back."""
        for record in await self.store.delegations.undelivered(direction=OUT):
            if record.from_agent in self.dir.apis:
                await self._deliver(record, outcome_of(record))

    async def _turn_open(self, record: DelegationRecord) -> bool:
        turn = await self.store.turns.get(record.origin_event or "", record.from_agent)
        return turn is not None and turn.open

    # --- deadlines and recovery --------------------------------------------------

    async def expire(self) -> None:
        """Fail every outbound delegation past its deadline (with a notice)."""
        for record in await self.store.delegations.expired(now_ms(), direction=OUT):
            if await self.store.delegations.set_state(record.id, DelegationPhase.TIMEOUT):
                await self.notify(record, "delegation_timeout")
                await self._deliver(
                    record, DelegationOutcome(False, f"[TIMEOUT] {record.to_agent}")
                )

    async def settle_ended(self) -> int:
        """Hand the waiters here the outcomes of delegations that ended elsewhere: with
        several gateway processes, another may have read the answer (it claimed the
        target room) or expired it. Returns how many were handed over."""
        handed = 0
        for id in list(self._waiting):
            record = await self.store.delegations.get(id, direction=OUT)
            if record is not None and record.terminal and id in self._waiting:
                await self.store.delegations.mark_reinjected(id)
                handed += self._settle(id, outcome_of(record))
        return handed

    async def run_deadlines(self, handle: object, every_s: float = 1.0) -> None:
        """A supervised loop enforcing deadlines (every process: ending one is atomic,
        so the notice and the hand-back happen once) and collecting outcomes for this
        process's waiters that another process recorded."""
        while True:
            await self.expire()
            await self.settle_ended()
            getattr(handle, "healthy", lambda: None)()
            await asyncio.sleep(every_s)

    async def recover(self, pages: int = 5) -> None:
        """After a start: resend unsent requests, read answers that landed while down,
        and hand back results that ended but were never delivered."""
        for record in await self.store.delegations.open(direction=OUT):
            api = self.dir.apis.get(record.from_agent)
            if api is None or self.other_transport(record):
                continue
            try:
                if record.state is DelegationPhase.PENDING:
                    await self._send_request(api, record, request_of(record))
                for event in await statuses_of(api, record, pages):
                    await self.on_status(event)
            except MatrixError as e:
                log.warning("delegation.recover_failed", id=record.id, error=str(e))
        await self.deliver_undelivered()

    def other_transport(self, record: DelegationRecord) -> bool:
        """Whether ``record`` travels other than by Matrix events (A2A: a2a_out.py)."""
        return False

    # --- notices -----------------------------------------------------------------------

    async def notify(self, record: DelegationRecord, key: str, **values: str) -> None:
        """A short notice in the origin room, as the delegating agent (best effort)."""
        if not record.origin_room:
            return
        text = responses.text(key, self.locale, frm=record.from_agent, to=record.to_agent, **values)
        if key == "delegation_sent" and (refs := _refs_note(record, self.locale)):
            text = f"{text} {refs}"
        content = {"msgtype": "m.notice", "body": text, MARKER: {"id": record.id, "note": key}}
        try:
            await self.dir.apis[record.from_agent].send_event(
                RoomId(record.origin_room),
                "m.room.message",
                content,
                txn_id=txn_id(record.id, record.from_agent, key),
            )
        except (MatrixError, KeyError) as e:
            log.warning("delegation.notice_failed", id=record.id, error=str(e))


def _refs_note(record: DelegationRecord, locale: str, shown: int = 5) -> str:
    """``(refs: group/project#12, !34)`` for a delegation's work references ('' if none)."""
    labels = labels_of(list(record.refs))
    if not labels:
        return ""
    listed = ", ".join(labels[:shown])
    if len(labels) > shown:
        listed += " " + responses.text("delegation_refs_more", locale, count=len(labels) - shown)
    return responses.text("delegation_refs", locale, refs=listed)


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
