"""Delegation between agents over Matrix: send, track, recover, deliver exactly once.

Agent A delegates to B by sending ``com.salon.delegation.request`` as A's user
into B's room; B answers with ``com.salon.delegation.status`` events in the same
room. Every outbound delegation is a row in the store before its request is
sent (with a transaction id derived from the delegation id, so a re-send after
a crash is one event). The outcome reaches A once: into the waiting turn if it
is still running in this process, otherwise (after a restart, say) through
``report`` — A's session plus a new turn that tells the origin room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from salon import responses
from salon._exceptions import MatrixError
from salon.agents.tools import DelegationOutcome
from salon.coordination.heartbeat import AGENT_STATE, AgentStatus, effective_status, parse_state
from salon.coordination.protocol import (
    REQUEST,
    STATUS,
    DelegationRequest,
    DelegationState,
    new_request,
    parse_status,
    request_content,
)
from salon.coordination.records import outcome_of, record_of, request_of, stable_id
from salon.ids import RoomAlias, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.matrix.txn import txn_id
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationPhase, DelegationRecord
from salon.store.records import now_ms

log = structlog.get_logger("salon.coordination")

OUT = DelegationDirection.OUT
Report = Callable[[DelegationRecord, DelegationOutcome], Awaitable[None]]
MARKER = "com.salon.delegation"


@dataclass(frozen=True)
class Directory:
    """Who the agents are: ours (with API handles and rooms) and our peers' (by name)."""

    server_name: str
    users: Mapping[str, UserId]  # every known agent id → user id (ours and peers')
    room_alias: Callable[[str], str]  # agent id → alias localpart of its room
    apis: Mapping[str, MatrixAPI]  # our agents only
    rooms: Mapping[str, RoomId]  # our agents' rooms

    def agent_of(self, user_id: str) -> str | None:
        """The agent id behind a user id, if it is a known agent."""
        return next((a for a, u in self.users.items() if u == user_id), None)


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
        self.report: Report | None = None
        self._waiting: dict[str, asyncio.Future[DelegationOutcome]] = {}
        self._room_cache: dict[str, RoomId] = {}

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
    ) -> DelegationOutcome:
        """Send a delegation and (with ``wait``) return its outcome; failures are outcomes."""
        if to_agent not in self.can_delegate_to.get(from_agent, ()):
            return DelegationOutcome(
                False, f"[NOT ALLOWED] {from_agent} may not delegate to {to_agent}"
            )
        api = self.dir.apis[from_agent]
        # A turn re-run after a crash asks again: the same question gets the same id,
        # so it finds the delegation it made before instead of making a second one.
        same_id = stable_id(origin_event, from_agent, to_agent, task) if origin_event else None
        if same_id and (known := await self.store.delegations.get(same_id)) is not None:
            return await self._resume(known, wait)
        try:
            room = await self._target_room(api, to_agent)
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
            )
        except (MatrixError, ValueError) as e:
            return DelegationOutcome(False, f"[FAILED] {to_agent}: {e}")
        record = record_of(request, OUT, room, origin_room=origin_room, origin_event=origin_event)
        await self.store.delegations.create(record)
        future: asyncio.Future[DelegationOutcome] = asyncio.get_running_loop().create_future()
        if wait:
            self._waiting[record.id] = future
        try:
            await self._send_request(api, record, request)
            await self.notify(record, "delegation_sent", task=_short(task))
            if not wait:
                return DelegationOutcome(True, record.id)
            return await future
        except MatrixError as e:
            await self.store.delegations.set_state(record.id, DelegationPhase.FAILED, error=str(e))
            return DelegationOutcome(False, f"[FAILED] {to_agent}: {e}")
        finally:
            self._waiting.pop(record.id, None)

    async def _resume(self, record: DelegationRecord, wait: bool) -> DelegationOutcome:
        """The outcome of a delegation made before (by this turn, before a restart)."""
        if record.terminal:
            await self.store.delegations.mark_reinjected(record.id)
            return outcome_of(record)
        if not wait:
            return DelegationOutcome(True, record.id)
        future: asyncio.Future[DelegationOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[record.id] = future
        try:
            if record.state is DelegationPhase.PENDING:
                await self._send_request(
                    self.dir.apis[record.from_agent], record, request_of(record)
                )
            # It may have ended while we were not looking.
            current = await self.store.delegations.get(record.id)
            if current is not None and current.terminal:
                await self.store.delegations.mark_reinjected(record.id)
                return outcome_of(current)
            return await future
        finally:
            self._waiting.pop(record.id, None)

    async def _send_request(
        self, api: MatrixAPI, record: DelegationRecord, request: DelegationRequest
    ) -> None:
        event_id = await api.send_event(
            RoomId(record.target_room),
            REQUEST,
            request_content(request),
            txn_id=txn_id(record.id, record.from_agent, "request"),
        )
        await self.store.delegations.set_request_event(record.id, event_id)
        log.info("delegation.sent", id=record.id, frm=record.from_agent, to=record.to_agent)

    async def _target_room(self, api: MatrixAPI, agent: str) -> RoomId:
        room = self.dir.rooms.get(agent) or self._room_cache.get(agent)
        if room is None:
            alias = RoomAlias(f"#{self.dir.room_alias(agent)}:{self.dir.server_name}")
            room, _ = await api.resolve_alias(alias)
            self._room_cache[agent] = room
        if room not in await api.joined_rooms():
            await api.join(room, [self.dir.server_name])  # agents visit each other's rooms
        return room

    async def _online(self, api: MatrixAPI, room: RoomId, agent: str) -> bool:
        content = await api.get_state_event(room, AGENT_STATE, self.dir.users[agent])
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
        if event.sender != self.dir.users.get(record.to_agent):
            log.warning("delegation.status_forged", id=status.id, sender=event.sender)
            return
        changed = await self.store.delegations.set_state(
            record.id, status.state.value, result=status.result, error=status.error
        )
        if not changed:
            return  # a replay, or a late answer after the deadline: recorded, not delivered
        if status.state is DelegationState.ACCEPTED:
            await self.notify(record, "delegation_accepted")
        elif status.state is DelegationState.COMPLETED:
            await self.notify(record, "delegation_completed")
            await self._deliver(record, DelegationOutcome(True, status.result or ""))
        elif status.state in (DelegationState.FAILED, DelegationState.REJECTED):
            await self.notify(record, "delegation_failed", error=status.error or "")
            tag = "REJECTED" if status.state is DelegationState.REJECTED else "FAILED"
            await self._deliver(record, DelegationOutcome(False, f"[{tag}] {status.error}"))

    async def _deliver(self, record: DelegationRecord, outcome: DelegationOutcome) -> None:
        future = self._waiting.get(record.id)
        if future is None and record.origin_event and await self._turn_open(record):
            return  # the delegating turn is being re-run: it collects the outcome itself
        if not await self.store.delegations.mark_reinjected(record.id):
            return  # delivered before (another path, another process, before a restart)
        if future is not None and not future.done():
            future.set_result(outcome)
        elif self.report is not None:
            await self.report(record, outcome)

    async def _turn_open(self, record: DelegationRecord) -> bool:
        turn = await self.store.turns.get(record.origin_event or "", record.from_agent)
        return turn is not None and turn.state.value in ("admitted", "running")

    # --- deadlines and recovery --------------------------------------------------

    async def expire(self) -> None:
        """Fail every outbound delegation past its deadline (with a notice)."""
        for record in await self.store.delegations.expired(now_ms(), direction=OUT):
            if await self.store.delegations.set_state(record.id, DelegationPhase.TIMEOUT):
                await self.notify(record, "delegation_timeout")
                await self._deliver(
                    record, DelegationOutcome(False, f"[TIMEOUT] {record.to_agent}")
                )

    async def run_deadlines(self, handle: object, every_s: float = 1.0) -> None:
        """A supervised loop enforcing deadlines."""
        while True:
            await self.expire()
            getattr(handle, "healthy", lambda: None)()
            await asyncio.sleep(every_s)

    async def recover(self, pages: int = 5) -> None:
        """After a start: resend unsent requests, and read answers that landed while down."""
        for record in await self.store.delegations.open(direction=OUT):
            api = self.dir.apis.get(record.from_agent)
            if api is None:
                continue
            try:
                if record.state is DelegationPhase.PENDING:
                    await self._resend(api, record)
                for event in await self._statuses(api, record, pages):
                    await self.on_status(event)
            except MatrixError as e:
                log.warning("delegation.recover_failed", id=record.id, error=str(e))

    async def _resend(self, api: MatrixAPI, record: DelegationRecord) -> None:
        await self._send_request(api, record, request_of(record))

    async def _statuses(
        self, api: MatrixAPI, record: DelegationRecord, pages: int
    ) -> list[InboundEvent]:
        """Status events for ``record`` in its target room, oldest first (newest pages read)."""
        found: list[InboundEvent] = []
        since: str | None = None
        for _ in range(pages):
            page = await api.messages(RoomId(record.target_room), limit=100, since=since)
            for raw in page.get("chunk") or []:
                content = raw.get("content") or {}
                if raw.get("type") == STATUS and content.get("id") == record.id:
                    found.append(
                        InboundEvent(
                            event_id=raw["event_id"],
                            room_id=RoomId(record.target_room),
                            sender=UserId(raw["sender"]),
                            type=STATUS,
                            content=content,
                            origin_ts=int(raw.get("origin_server_ts") or 0),
                            received_by=api.user_id,
                        )
                    )
                if raw.get("event_id") == record.request_event_id:
                    return list(reversed(found))
            since = page.get("end")
            if not since:
                break
        return list(reversed(found))

    # --- notices -----------------------------------------------------------------------

    async def notify(self, record: DelegationRecord, key: str, **values: str) -> None:
        """A short notice in the origin room, as the delegating agent (best effort)."""
        if not record.origin_room:
            return
        text = responses.text(key, self.locale, frm=record.from_agent, to=record.to_agent, **values)
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


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TurnDelegator:
    """Delegation as one agent may use it during one turn (the agents layer's Delegator)."""

    def __init__(
        self,
        manager: DelegationManager,
        agent_id: str,
        *,
        origin_room: str | None,
        origin_event: str | None,
        parent: DelegationRequest | None = None,
    ) -> None:
        self.manager = manager
        self.agent_id = agent_id
        self.origin_room = origin_room
        self.origin_event = origin_event
        self.parent = parent

    def targets(self) -> Sequence[tuple[str, str]]:
        """Agents this agent may delegate to."""
        return self.manager.targets(self.agent_id)

    async def delegate(
        self, agent: str, task: str, context: str | None = None
    ) -> DelegationOutcome:
        """Delegate and wait for the outcome."""
        return await self.manager.delegate(
            self.agent_id,
            agent,
            task,
            context=context,
            origin_room=self.origin_room,
            origin_event=self.origin_event,
            parent=self.parent,
        )
