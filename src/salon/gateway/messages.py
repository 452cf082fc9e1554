"""A message in a room: filter, command, route, then a turn for each agent chosen.

Who answers is decided in ``routing/`` (the chain, with its reason); this module
only gathers what the chain needs and carries the decision out.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from salon import responses
from salon._exceptions import MatrixError, is_transient
from salon.commands.handlers import Asked, CommandHandlers
from salon.commands.parser import parse_command
from salon.config.models import AccessConfig
from salon.gateway.roomfacts import RoomFacts
from salon.gateway.visits import VisitUse, no_visit
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.matrix.membership import join_or_be_invited
from salon.metrics import EVENTS_DROPPED
from salon.roster import Roster
from salon.routing.context import Binding, MessageContext
from salon.routing.router import Reason, Router
from salon.store import Store
from salon.store.records import InboxState, RoomKind, RoomRecord
from salon.store.saved import Decision
from salon.turns.replies import TURN_KEY, ReplyTo, hop_of, reply_content, txn_id
from salon.turns.runner import TurnRunner
from salon.turns.spec import TurnKind, TurnSpec
from salon.turns.voices import GATEWAY_MARK, ROUTER_VOICE, RoomVoices

log = structlog.get_logger("salon.gateway.messages")

Handled = tuple[InboxState, str]
_BINDING_KINDS = frozenset({RoomKind.AGENT, RoomKind.CHAT, RoomKind.BOUND})


def session_key(event: InboundEvent, agent_id: str) -> str:
    """``agent:<id>:matrix:<room>[:thread:<root>]``: a thread is a conversation of its own."""
    thread = event.thread_root
    return f"agent:{agent_id}:matrix:{event.room_id}" + (f":thread:{thread}" if thread else "")


def message_turn(event: InboundEvent, agent_id: AgentId, *, by_agent: bool = False) -> TurnSpec:
    """The turn of ``agent_id`` answering ``event`` (``by_agent``: an agent wrote it)."""
    return TurnSpec(
        turn_id=event.event_id,
        agent_id=agent_id,
        kind=TurnKind.MESSAGE,
        room_id=event.room_id,
        sender=event.sender,
        # A person's message is worked on for that person; an agent's for nobody.
        for_user=None if by_agent else event.sender,
        text=event.body,
        session_key=session_key(event, agent_id),
        reply_to=ReplyTo.event(event),
    )


class MessageHandler:
    """Handles ``m.room.message`` events taken from the inbox."""

    def __init__(
        self,
        store: Store,
        *,
        roster: Roster,
        access: AccessConfig,
        router: Router,
        commands: CommandHandlers,
        runner: TurnRunner,
        facts: RoomFacts,
        voices: RoomVoices,
        agent_apis: Mapping[AgentId, MatrixAPI],
        locale: str = "en",
        on_visit: VisitUse = no_visit,
    ) -> None:
        self.on_visit = on_visit
        self.store = store
        self.roster = roster
        self.access = access
        self.router = router
        self.commands = commands
        self.runner = runner
        self.facts = facts
        self.voices = voices
        self.agent_apis = agent_apis
        self.locale = locale

    async def __call__(self, event: InboundEvent) -> Handled:
        if not event.body.strip():
            EVENTS_DROPPED.labels(reason="blank").inc()
            return InboxState.DROPPED, "blank"
        sender_agent = self.roster.agent_of(event.sender)
        if sender_agent is None and not self.access.is_allowed(event.sender):
            EVENTS_DROPPED.labels(reason="unauthorised").inc()
            log.info("event.unauthorised", event_id=event.event_id, sender=event.sender)
            return InboxState.DROPPED, "unauthorised"
        user = await self.store.users.get(event.sender)
        locale = user.locale or self.locale
        room = await self.store.rooms.get(event.room_id)
        if room is not None and room.archived:
            return InboxState.DONE, "archived"

        voice = self.voices.of(event.room_id, room)

        async def reply(text: str) -> None:
            await self.router_says(event, text, voice)

        if sender_agent is None:
            command = parse_command(event.body)
            if command is not None:
                await self.commands.handle(Asked(event, command, user, room, locale, reply))
                return InboxState.DONE, "command"
            if await self.commands.answer_pending(event, reply, locale):
                return InboxState.DONE, "command"
        context = await self._context(event, room, sender_agent, user.selected_agent)
        decision = await self.router.route(context)
        await self.store.decisions.record(
            Decision(
                event.event_id,
                event.room_id,
                decision.agents,
                decision.reason.value,
                decision.detail,
                sender=event.sender,
            )
        )
        log.info(
            "event.routed",
            event_id=event.event_id,
            room_id=event.room_id,
            agents=list(decision.agents),
            reason=decision.reason.value,
        )
        if decision.reason is Reason.STALE_CHAT and decision.chat_owner:
            owner = decision.chat_owner
            label = self.roster.label(owner)
            await reply(responses.text("chat_belongs_to", locale, label=label, agent_id=owner))
        elif not decision.agents and decision.router_addressed and sender_agent is None:
            await reply(responses.text("nobody_notice", locale))
        busy: str | None = None
        for agent_id in decision.agents:
            member = self.roster.get(agent_id)
            if member is None or not member.hosted:
                continue
            turn = message_turn(event, member.agent_id, by_agent=sender_agent is not None)
            if (refused := self.runner.refusal(turn)) is not None:
                busy = busy or f"busy: {refused}"  # too many wait already: say so, queue none
                await reply(responses.text("turns_busy", locale, label=member.label))
                continue
            await self._bring(member.agent_id, event, voice)
            await self.runner.submit(turn)
        return InboxState.DONE, busy or decision.reason.value

    async def _context(
        self,
        event: InboundEvent,
        room: RoomRecord | None,
        sender_agent: str | None,
        selected_agent: str | None,
    ) -> MessageContext:
        binding = None
        if room is not None and room.agent_id and room.kind in _BINDING_KINDS:
            binding = Binding(room.agent_id, "agent" if room.kind is RoomKind.AGENT else "chat")
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
            agents_in_room=await self._present(event.room_id, via),
            binding=binding,
            sender_agent=sender_agent,
            hop=hop_of(event),
            # The stale-chat gate concerns `!new` chats only.
            selected_agent=selected_agent if room and room.kind is RoomKind.CHAT else None,
        )

    async def _present(self, room_id: str, via: UserId) -> frozenset[str]:
        """Our agents a mention can reach here: those joined, and in an agent's own room
        every hosted agent (all are invited there as visitors and join when asked)."""
        joined = await self.facts.agents_in(room_id, via)
        if self.voices.owner(room_id) is None:
            return joined
        return joined | {m.agent_id for m in self.roster.hosted()}

    async def _bring(self, agent_id: AgentId, event: InboundEvent, voice: MatrixAPI) -> None:
        """Make sure a routed agent is in the room (a mention of a visitor, a route or
        the AI router may pick one that is not): it joins, invited first if it must be
        by ``voice``, whoever acts in the room."""
        await self.on_visit(agent_id, RoomId(event.room_id))  # a leave under way ends first
        if agent_id in await self.facts.agents_in(event.room_id, UserId(event.received_by)):
            return
        try:
            await join_or_be_invited(self.agent_apis[agent_id], RoomId(event.room_id), voice)
        except MatrixError as e:
            if is_transient(e):
                raise
            log.warning("agent.join_failed", agent=agent_id, room_id=event.room_id, error=str(e))
        self.facts.forget(event.room_id)

    async def router_says(self, event: InboundEvent, text: str, voice: MatrixAPI) -> None:
        """The gateway answers in the room as ``voice``: the router, or in an agent's
        own room or a `!new` chat the agent (see voices). An outage is raised (the
        event is tried again later); a refusal (not a member) is logged."""
        content = reply_content(ReplyTo.event(event), ROUTER_VOICE, text, notice=True)
        content[TURN_KEY][GATEWAY_MARK] = True
        try:
            await voice.send_event(
                RoomId(event.room_id),
                "m.room.message",
                content,
                txn_id=txn_id(event.event_id, ROUTER_VOICE, "answer"),
            )
        except MatrixError as e:
            if is_transient(e):
                raise
            log.warning("router.reply_failed", room_id=event.room_id, error=str(e))


STOP_REACTIONS = frozenset({"🛑", "🛑\ufe0f"})


class ReactionHandler:
    """A 🛑 reaction on a reply being written stops it."""

    def __init__(self, runner: TurnRunner, roster: Roster, access: AccessConfig) -> None:
        self.runner = runner
        self.roster = roster
        self.access = access

    async def __call__(self, event: InboundEvent) -> Handled:
        if self.roster.agent_of(event.sender) is None and not self.access.is_allowed(event.sender):
            EVENTS_DROPPED.labels(reason="unauthorised").inc()
            return InboxState.DROPPED, "unauthorised"
        rel = event.relation
        if rel.get("rel_type") == "m.annotation" and rel.get("key") in STOP_REACTIONS:
            target = rel.get("event_id")
            if isinstance(target, str) and self.runner.stop_reply(target):
                log.info("turn.stop_requested", reply_event_id=target)
                return InboxState.DONE, "stop"
        return InboxState.DONE, "reaction"
