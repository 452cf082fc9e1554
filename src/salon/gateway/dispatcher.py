"""From admitted events to turns: filter, route, run, record.

The dispatcher is the :class:`EventSink` of whatever event source runs (client
mode now, appservice later). ``admit`` only stores; a worker drains the inbox,
so a crash between the two loses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence

import structlog

from salon.agents.runtime import AgentRuntime
from salon.config.models import AccessConfig
from salon.gateway.turns import TurnRunner
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent, Invite, parse_event
from salon.metrics import EVENTS_ADMITTED, EVENTS_DROPPED
from salon.routing.router import route
from salon.store import Store
from salon.store.records import InboxItem, InboxRow, InboxState

log = structlog.get_logger("salon.gateway.dispatcher")

# Event types worth admitting: messages start turns, reactions can stop them.
ADMITTED_TYPES = frozenset({"m.room.message", "m.reaction"})
STOP_REACTIONS = frozenset({"🛑", "🛑\ufe0f"})
STOP_COMMAND = "!stop"


class Dispatcher:
    """Admits inbound events and turns them into agent turns."""

    def __init__(
        self,
        store: Store,
        *,
        apis: Mapping[UserId, MatrixAPI],
        agents: Mapping[AgentId, AgentRuntime],
        agent_users: Mapping[AgentId, UserId],
        access: AccessConfig,
        server_name: str,
        runner: TurnRunner,
        created_at: Mapping[UserId, int],
    ) -> None:
        self.store = store
        self.apis = apis
        self.agents = agents
        self.agent_users = agent_users
        self.access = access
        self.server_name = server_name
        self.runner = runner
        self._created_at = created_at
        self._ours = set(apis)
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    # --- EventSink -------------------------------------------------------

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        """Store the batch's candidate events in the inbox (idempotent)."""
        items = [self._inbox_item(e) for e in events if self._worth_admitting(identity, e)]
        added = await self.store.inbox.admit(items)
        if added:
            EVENTS_ADMITTED.inc(added)
            self._wake.set()

    async def invited(self, invite: Invite) -> None:
        """Accept invitations from allowed people and from Salon's own users."""
        api = self.apis.get(invite.invited)
        if api is None:
            return
        if invite.sender in self._ours or self.access.is_allowed(invite.sender, self.server_name):
            await api.join(invite.room_id)
            log.info("invite.accepted", user=invite.invited, room_id=invite.room_id)
        else:
            EVENTS_DROPPED.labels(reason="invite_unauthorised").inc()
            log.info("invite.ignored", user=invite.invited, sender=invite.sender)

    # --- worker ------------------------------------------------------------

    def start(self) -> None:
        """Start draining the inbox (and resume turns a crash interrupted)."""
        self._wake.set()
        self._worker = asyncio.create_task(self._drain_forever(), name="dispatcher")

    async def stop(self) -> None:
        """Stop the worker and cancel running turns (they resume on next start)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self.runner.stop()

    async def _drain_forever(self) -> None:
        await self.runner.resume_unfinished(self._load_event)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := await self.store.inbox.pending():
                for row in batch:
                    try:
                        await self._handle(row)
                    except Exception as e:  # one bad row must not stop the worker
                        log.exception("inbox.handle_failed", event_id=row.item.event_id)
                        await self.store.inbox.mark(
                            row.item.event_id, InboxState.DROPPED, f"error: {e}"
                        )

    async def _handle(self, row: InboxRow) -> None:
        event = self._event_of(row.item)
        if event is None:
            await self.store.inbox.mark(row.item.event_id, InboxState.DROPPED, "malformed")
            return
        if not self.access.is_allowed(event.sender, self.server_name):
            EVENTS_DROPPED.labels(reason="unauthorised").inc()
            log.info("event.unauthorised", event_id=event.event_id, sender=event.sender)
            await self.store.inbox.mark(event.event_id, InboxState.DROPPED, "unauthorised")
            return
        if event.type == "m.reaction":
            await self._reaction(event)
            return
        if event.body.strip().lower() == STOP_COMMAND:
            stopped = self.runner.stop_in_room(event.room_id)
            log.info("turn.stop_requested", room_id=event.room_id, turns=stopped)
            await self.store.inbox.mark(event.event_id, InboxState.DONE, "stop")
            return
        room = await self.store.rooms.get(event.room_id)
        decision = route(room, set(self.agents))
        log.info(
            "event.routed",
            event_id=event.event_id,
            room_id=event.room_id,
            agents=list(decision.agents),
            reason=decision.reason.value,
        )
        for agent_id in decision.agents:
            await self.store.turns.admit(event.event_id, agent_id, event.room_id)
            self.runner.launch(event, agent_id)
        await self.store.inbox.mark(event.event_id, InboxState.DONE, decision.reason.value)

    async def _reaction(self, event: InboundEvent) -> None:
        rel = event.relation
        if rel.get("rel_type") == "m.annotation" and rel.get("key") in STOP_REACTIONS:
            target = rel.get("event_id")
            if isinstance(target, str) and self.runner.stop_reply(target):
                log.info("turn.stop_requested", reply_event_id=target)
        await self.store.inbox.mark(event.event_id, InboxState.DONE, "reaction")

    # --- helpers -------------------------------------------------------------

    def _worth_admitting(self, identity: UserId, event: InboundEvent) -> bool:
        if event.type not in ADMITTED_TYPES or event.state_key is not None:
            return False
        if event.sender in self._ours:
            return False  # own echoes (agent-to-agent traffic arrives as typed events)
        if event.replaces:
            return False  # an edit is not a new message
        if event.origin_ts < self._created_at.get(identity, 0):
            EVENTS_DROPPED.labels(reason="history").inc()
            return False  # history from before this identity existed is never answered
        return True

    @staticmethod
    def _inbox_item(event: InboundEvent) -> InboxItem:
        return InboxItem(
            event_id=event.event_id,
            room_id=event.room_id,
            sender=event.sender,
            event_type=event.type,
            event_json=event.to_json(),
            origin_ts=event.origin_ts,
            received_by=event.received_by,
        )

    @staticmethod
    def _event_of(item: InboxItem) -> InboundEvent | None:
        try:
            raw = json.loads(item.event_json)
        except ValueError:
            return None
        return parse_event(raw, item.room_id, UserId(item.received_by))

    async def _load_event(self, event_id: str) -> InboundEvent | None:
        row = await self.store.inbox.get(event_id)
        return None if row is None else self._event_of(row.item)
