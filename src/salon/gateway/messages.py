"""A message in a room, top to bottom: what is known of it (gathered once, in
:mod:`salon.gateway.message_context`), a command answered, or routed and a turn
run for each agent chosen.

Who answers is decided in ``routing/`` (the chain, with its reason); this module
carries the decision out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import structlog

from salon import responses
from salon._exceptions import MatrixError, is_transient
from salon.commands.handlers import Asked, CommandHandlers
from salon.commands.parser import parse_command
from salon.config.models import AccessConfig
from salon.gateway.attachments import AttachmentFetcher, Refused, turn_text
from salon.gateway.message_context import Handled, Message, MessageContexts
from salon.gateway.visits import VisitUse, no_visit
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.matrix.media import MediaError, MediaRef, parse_media
from salon.matrix.membership import join_or_be_invited
from salon.metrics import EVENTS_DROPPED
from salon.roster import Roster
from salon.routing.router import Reason, Router
from salon.store.records import InboxState
from salon.store.saved import Decision
from salon.turns.replies import TURN_KEY, ReplyTo, reply_content, txn_id
from salon.turns.runner import TurnRunner
from salon.turns.spec import TurnKind, TurnSpec
from salon.turns.voices import GATEWAY_MARK, ROUTER_VOICE

log = structlog.get_logger("salon.gateway.messages")

__all__ = ["Handled", "MessageHandler", "ReactionHandler", "message_turn", "session_key"]


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
        text=turn_text(event),
        session_key=session_key(event, agent_id),
        reply_to=ReplyTo.event(event),
    )


class MessageHandler:
    """Handles ``m.room.message`` events taken from the inbox: gathers what is known
    of the message (:mod:`~salon.gateway.message_context`), answers a command, or
    routes it and runs a turn for each agent chosen."""

    def __init__(
        self,
        contexts: MessageContexts,
        *,
        router: Router,
        commands: CommandHandlers,
        runner: TurnRunner,
        agent_apis: Mapping[AgentId, MatrixAPI],
        on_visit: VisitUse = no_visit,
    ) -> None:
        self.contexts = contexts
        self.store, self.roster, self.facts = contexts.store, contexts.roster, contexts.facts
        self.router = router  # a reload swaps it
        self.commands = commands
        self.runner = runner
        self.agent_apis = agent_apis
        self.on_visit = on_visit
        # Downloads media messages' files (set by the composition root; None: a file
        # is passed on as its name only).
        self.attachments: AttachmentFetcher | None = None

    async def __call__(self, event: InboundEvent) -> Handled:
        message = await self.contexts.gather(event)
        if not isinstance(message, Message):
            return message  # not handled, and why
        media: MediaRef | MediaError | None
        try:
            media = parse_media(event.content) if self.attachments is not None else None
        except MediaError as e:
            media = e  # told to the sender per agent chosen, below
        # A file's name is never a command (a caption may still be one).
        commandable = not isinstance(media, MediaError) and (media is None or media.caption)
        if message.sender_agent is None and commandable and await self._command(message):
            return InboxState.DONE, "command"
        decision = await self.router.route(await self.contexts.routing(message))
        # Written with the first turn's admission (one store trip, not two), or alone
        # below if no turn is admitted. The guarantees allow it: the decision only
        # answers `!why` and the next message's routing in this room (which waits in
        # its lane until this one is handled), and both writes are idempotent; until
        # the inbox row is marked done, a crash or a retry routes the event again and
        # writes whichever of them is missing.
        unwritten: Decision | None = Decision(
            event.event_id,
            event.room_id,
            decision.agents,
            decision.reason.value,
            decision.detail,
            sender=event.sender,
        )
        # Debug: the decision is stored (`!why`), and each turn it starts has its own
        # info line when it closes; a line per message more at ``info`` cost as much
        # as the rest of its handling (bench/scale.py --part cost).
        log.debug(
            "event.routed",
            event_id=event.event_id,
            room_id=event.room_id,
            agents=list(decision.agents),
            reason=decision.reason.value,
        )
        locale = message.locale
        if decision.reason is Reason.STALE_CHAT and decision.chat_owner:
            owner = decision.chat_owner
            label = self.roster.label(owner)
            text = responses.text("chat_belongs_to", locale, label=label, agent_id=owner)
            await self.router_says(event, text, message.voice)
        elif not decision.agents and decision.router_addressed and message.sender_agent is None:
            await self.router_says(event, responses.text("nobody_notice", locale), message.voice)
        note: str | None = None
        for agent_id in decision.agents:
            member = self.roster.get(agent_id)
            if member is None or not member.hosted:
                continue
            turn = message_turn(event, member.agent_id, by_agent=message.sender_agent is not None)
            if (refused := self.runner.refusal(turn)) is not None:
                note = note or f"busy: {refused}"  # too many wait already: say so, queue none
                text = responses.text("turns_busy", locale, label=member.label)
                await self.router_says(event, text, message.voice)
                continue
            if member.agent_id != message.owner:  # the owner is in its own room
                await self._bring(member.agent_id, event, message.voice)
            if media is not None:
                attached = await self._attach(turn, media, member.label, message)
                if isinstance(attached, Refused):
                    note = note or attached.reason
                    continue
                turn = attached
            await self.runner.submit(turn, decision=unwritten)
            unwritten = None
        if unwritten is not None:
            await self.store.decisions.record(unwritten)
        return InboxState.DONE, note or decision.reason.value

    async def _attach(
        self, turn: TurnSpec, media: MediaRef | MediaError, label: str, message: Message
    ) -> TurnSpec | Refused:
        """``turn`` with the message's file stored for its agent, or why it has none
        (told to the sender; an outage is raised, so the event is tried again)."""
        assert self.attachments is not None
        event = message.event
        try:
            if isinstance(media, MediaError):
                raise media
            stored = await self.attachments.fetch(media, event, turn.agent_id, turn.session_key)
        except MatrixError as e:
            name = media.name if isinstance(media, MediaRef) else event.body or "file"
            refused = self.attachments.refusal(e, name, label, message.locale)
            await self.router_says(event, refused.notice, message.voice)
            return refused
        return replace(turn, attachments=(stored,))

    async def _command(self, message: Message) -> bool:
        """A person's command (or the number answering `!load`): answered here."""
        event, voice = message.event, message.voice

        async def reply(text: str) -> None:
            await self.router_says(event, text, voice)

        command = parse_command(event.body)
        if command is not None:
            asked = Asked(event, command, message.user, message.room, message.locale, reply)
            await self.commands.handle(asked)
            return True
        return await self.commands.answer_pending(event, reply, message.locale)

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
    """A 🛑 reaction on a reply being written stops it; ✅ / ❌ answer an approval request."""

    def __init__(self, runner: TurnRunner, roster: Roster, access: AccessConfig) -> None:
        self.runner = runner
        self.roster = roster
        self.access = access
        # An answer to an approval request, if it is one (gateway/approvals.py).
        self.approvals: Callable[[InboundEvent], Awaitable[str | None]] | None = None

    async def __call__(self, event: InboundEvent) -> Handled:
        if self.approvals is not None and self.roster.agent_of(event.sender) is None:
            # Before the access check: a stranger's answer is kept on the request, with why.
            answered = await self.approvals(event)
            if answered is not None:
                return InboxState.DONE, f"approval {answered}"
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
