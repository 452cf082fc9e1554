"""From admitted events to turns: filter, route, run, record.

The dispatcher is the :class:`EventSink` of whatever event source runs (client
mode now, appservice later). ``admit`` only stores; a worker drains the inbox,
so a crash between the two loses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Literal

import structlog

from salon import responses
from salon._exceptions import MatrixError
from salon.agents.runtime import AgentRuntime
from salon.commands.handlers import Asked, CommandHandlers
from salon.commands.parser import parse_command
from salon.config.models import AccessConfig
from salon.coordination.protocol import REQUEST, STATUS
from salon.gateway.coordination import Coordinator
from salon.gateway.replies import hop_of, reply_content, txn_id
from salon.gateway.roomfacts import RoomFacts
from salon.gateway.turns import TurnRunner
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent, Invite, parse_event
from salon.metrics import EVENTS_ADMITTED, EVENTS_DROPPED
from salon.routing.context import Binding, MessageContext
from salon.routing.router import Reason, RouteDecision, Router
from salon.store import Store
from salon.store.records import InboxItem, InboxRow, InboxState, RoomKind, RoomRecord
from salon.store.saved import Decision

log = structlog.get_logger("salon.gateway.dispatcher")

# Event types worth admitting: messages start turns, reactions can stop them,
# delegation events travel between agents.
ADMITTED_TYPES = frozenset({"m.room.message", "m.reaction", REQUEST, STATUS})
STOP_REACTIONS = frozenset({"🛑", "🛑\ufe0f"})
# Agent-to-agent messages are followed this many hops at most (no endless bot ping-pong).
MAX_HOPS = 3
_BOUND_KINDS: dict[RoomKind, Literal["agent", "chat"]] = {
    RoomKind.AGENT: "agent",
    RoomKind.CHAT: "chat",
    RoomKind.BOUND: "chat",
}


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
        router: Router,
        router_api: MatrixAPI,
        commands: CommandHandlers,
        locale: str = "en",
        coordinator: Coordinator | None = None,
        peer_rooms: Mapping[str, str] | None = None,
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
        self._agent_of = {u: a for a, u in agent_users.items()}
        self.router = router
        self.router_api = router_api
        self.commands = commands
        self.locale = locale
        self.coordinator = coordinator
        # Room alias → agent id of rooms that belong to agents other gateways host.
        self.peer_rooms = dict(peer_rooms or {})
        self.facts = RoomFacts(apis, agent_users)
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
            self.facts.forget(invite.room_id)
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
        if event.type in (REQUEST, STATUS):
            # Validated, and checked against known agents, by the coordination layer.
            if self.coordinator is not None:
                if event.type == REQUEST:
                    await self.coordinator.inbound.on_request(event)
                else:
                    await self.coordinator.manager.on_status(event)
            await self.store.inbox.mark(event.event_id, InboxState.DONE, "delegation")
            return
        sender_agent = self._agent_of.get(event.sender)
        if sender_agent is None and not self.access.is_allowed(event.sender, self.server_name):
            EVENTS_DROPPED.labels(reason="unauthorised").inc()
            log.info("event.unauthorised", event_id=event.event_id, sender=event.sender)
            await self.store.inbox.mark(event.event_id, InboxState.DROPPED, "unauthorised")
            return
        if event.type == "m.reaction":
            await self._reaction(event)
            return
        user = await self.store.users.get(event.sender)
        locale = user.locale or self.locale
        room = await self.store.rooms.get(event.room_id)
        if room is not None and room.archived:
            await self.store.inbox.mark(event.event_id, InboxState.DONE, "archived")
            return

        async def reply(text: str) -> None:
            await self._router_says(event, text)

        if sender_agent is None:
            command = parse_command(event.body)
            if command is not None:
                asked = Asked(event, command, user, room, locale, reply)
                await self.commands.handle(asked)
                await self.store.inbox.mark(event.event_id, InboxState.DONE, "command")
                return
            if await self.commands.answer_pending(event, reply, locale):
                await self.store.inbox.mark(event.event_id, InboxState.DONE, "command")
                return
        context = await self._context(event, room, sender_agent)
        decision = await self.router.route(context)
        peer = next(
            (self.peer_rooms[a] for a in context.room_aliases if a in self.peer_rooms), None
        )
        if peer is not None and decision.reason is not Reason.MENTION:
            # Another gateway's agent owns this room: only an explicit mention is ours.
            decision = RouteDecision((), Reason.NOBODY, f"room of {peer}")
        await self.store.decisions.record(
            Decision(
                event.event_id,
                event.room_id,
                decision.agents,
                decision.reason.value,
                decision.detail,
            )
        )
        log.info(
            "event.routed",
            event_id=event.event_id,
            room_id=event.room_id,
            agents=list(decision.agents),
            reason=decision.reason.value,
        )
        bound = room.agent_id if room is not None else None
        if (
            room is not None
            and room.kind is RoomKind.CHAT
            and decision.reason is Reason.CHAT_ROOM
            and user.selected_agent
            and user.selected_agent != bound
            and bound is not None
            and bound in self.agents
        ):
            # A `!new` chat belongs to its agent; the person has since picked another one.
            label = self.agents[AgentId(bound)].label
            await reply(responses.text("chat_belongs_to", locale, label=label, agent_id=bound))
            await self.store.inbox.mark(event.event_id, InboxState.DONE, "stale_chat")
            return
        if not decision.agents and decision.router_addressed and sender_agent is None:
            await reply(responses.text("nobody_notice", locale))
        for agent_id in decision.agents:
            if agent_id not in self.agents:
                continue
            await self._bring(AgentId(agent_id), event)
            await self.store.turns.admit(event.event_id, agent_id, event.room_id)
            self.runner.launch(event, AgentId(agent_id))
        await self.store.inbox.mark(event.event_id, InboxState.DONE, decision.reason.value)

    async def _context(
        self, event: InboundEvent, room: RoomRecord | None, sender_agent: str | None
    ) -> MessageContext:
        binding = None
        if room is not None and room.agent_id and room.kind in _BOUND_KINDS:
            binding = Binding(room.agent_id, _BOUND_KINDS[room.kind])
        via = UserId(event.received_by)
        mentions = event.content.get("m.mentions")
        mentioned = mentions.get("user_ids") if isinstance(mentions, dict) else None
        formatted = event.content.get("formatted_body")
        return MessageContext(
            room_id=event.room_id,
            sender=event.sender,
            body=event.body,
            room_aliases=await self.facts.aliases(event.room_id, via, room.alias if room else None),
            thread_root=event.thread_root,
            formatted_body=formatted if isinstance(formatted, str) else None,
            mentioned_user_ids=tuple(u for u in mentioned or () if isinstance(u, str)),
            agents_in_room=await self.facts.agents_in(event.room_id, via),
            binding=binding,
            sender_agent=sender_agent,
        )

    async def _bring(self, agent_id: AgentId, event: InboundEvent) -> None:
        """Make sure a routed agent is in the room (a route or the AI router may pick one
        that is not); the router invites it and it joins."""
        if agent_id in await self.facts.agents_in(event.room_id, UserId(event.received_by)):
            return
        agent_user = self.agent_users[agent_id]
        try:
            await self.router_api.invite(event.room_id, agent_user)
            await self.apis[agent_user].join(event.room_id)
        except MatrixError as e:
            log.warning("agent.join_failed", agent=agent_id, room_id=event.room_id, error=str(e))
        self.facts.forget(event.room_id)

    async def _router_says(self, event: InboundEvent, text: str) -> None:
        """The router answers in the room (best effort: it may not be a member)."""
        content = reply_content(event, "router", text, notice=True)
        try:
            await self.router_api.send_event(
                event.room_id,
                "m.room.message",
                content,
                txn_id=txn_id(event.event_id, "router", "answer"),
            )
        except MatrixError as e:
            log.warning("router.reply_failed", room_id=event.room_id, error=str(e))

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
        # Own echoes are dropped; an agent's message may address another agent,
        # within the hop limit.
        if event.type in (REQUEST, STATUS):
            return event.sender not in self._ours or event.sender in self._agent_of
        if event.sender in self._ours and (
            event.sender not in self._agent_of or hop_of(event) >= MAX_HOPS
        ):
            return False
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
