"""Everything known of one message before it is routed, gathered in one place.

Two stages, so a command costs no more than before: :meth:`MessageContexts.gather`
reads only the store (who sent it and may they, their language, the room's record,
who speaks for the gateway there); :meth:`MessageContexts.routing` then adds what
routing needs from Matrix (the room's aliases and the agents in it, both cached
in :class:`~salon.gateway.roomfacts.RoomFacts`) and from the event itself
(mentions, thread, hop, the room's binding to an agent).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from salon.config.models import AccessConfig
from salon.gateway.roomfacts import RoomFacts
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.metrics import EVENTS_DROPPED
from salon.roster import Roster
from salon.routing.context import Binding, MessageContext
from salon.store import Store
from salon.store.records import InboxState, RoomKind, RoomRecord
from salon.store.users import UserRecord
from salon.turns.replies import hop_of
from salon.turns.voices import RoomVoices

log = structlog.get_logger("salon.gateway.messages")

Handled = tuple[InboxState, str]
_BINDING_KINDS = frozenset({RoomKind.AGENT, RoomKind.CHAT, RoomKind.BOUND})


@dataclass(frozen=True)
class Message:
    """One message admitted for handling, with who and where it comes from."""

    event: InboundEvent
    sender_agent: AgentId | None  # the sender is an agent (ours or a peer's)
    user: UserRecord  # what the store knows of the sender
    locale: str  # the language to answer the sender in
    room: RoomRecord | None  # what the store knows of the room
    voice: MatrixAPI  # who speaks for the gateway in the room (see voices)
    owner: AgentId | None  # the hosted agent whose own room this is


class MessageContexts:
    """Builds a :class:`Message` from an event, then its routing context."""

    def __init__(
        self,
        store: Store,
        roster: Roster,
        access: AccessConfig,
        facts: RoomFacts,
        voices: RoomVoices,
        locale: str = "en",
    ) -> None:
        self.store = store
        self.roster = roster
        self.access = access  # a reload swaps it
        self.facts = facts
        self.voices = voices
        self.locale = locale

    async def gather(self, event: InboundEvent) -> Message | Handled:
        """The message, or why it is not handled (blank, unauthorised, archived room)."""
        if not event.body.strip():
            EVENTS_DROPPED.labels(reason="blank").inc()
            return InboxState.DROPPED, "blank"
        sender_agent = self.roster.agent_of(event.sender)
        if sender_agent is None and not self.access.is_allowed(event.sender):
            EVENTS_DROPPED.labels(reason="unauthorised").inc()
            log.info("event.unauthorised", event_id=event.event_id, sender=event.sender)
            return InboxState.DROPPED, "unauthorised"
        user, room = await self.store.users.get_with_room(event.sender, event.room_id)
        if room is not None and room.archived:
            return InboxState.DONE, "archived"
        return Message(
            event=event,
            sender_agent=sender_agent,
            user=user,
            locale=user.locale or self.locale,
            room=room,
            voice=self.voices.of(event.room_id, room),
            owner=self.voices.owner(event.room_id),
        )

    async def routing(self, message: Message) -> MessageContext:
        """What the router needs to know of ``message``."""
        event, room = message.event, message.room
        binding = None
        if room is not None and room.agent_id and room.kind in _BINDING_KINDS:
            binding = Binding(room.agent_id, "agent" if room.kind is RoomKind.AGENT else "chat")
        via = UserId(event.received_by)
        if message.owner is not None and room is not None and room.alias:
            # An agent's own room, as the store recorded it: only its owner (and the
            # router, in older rooms) may set its aliases (people are invited with power
            # 0), so the alias recorded is its; and every hosted agent can be reached by
            # a mention there (all are invited as visitors and join when asked). No read
            # on the reply's path (after a restart, a hundred at once).
            aliases: tuple[str, ...] = (room.alias,)
            present: frozenset[str] = frozenset(m.agent_id for m in self.roster.hosted())
        else:
            aliases = await self.facts.aliases(event.room_id, via, room.alias if room else None)
            # Our agents a mention can reach here: those joined, and in an agent's own
            # room every hosted agent (all are invited there as visitors).
            present = await self.facts.agents_in(event.room_id, via)
            if message.owner is not None:
                present |= {m.agent_id for m in self.roster.hosted()}
        mentions = event.content.get("m.mentions")
        mentioned = mentions.get("user_ids") if isinstance(mentions, dict) else None
        formatted = event.content.get("formatted_body")
        chat = room is not None and room.kind is RoomKind.CHAT
        return MessageContext(
            room_id=event.room_id,
            sender=event.sender,
            body=event.body,
            room_aliases=aliases,
            thread_root=event.thread_root,
            formatted_body=formatted if isinstance(formatted, str) else None,
            mentioned_user_ids=tuple(u for u in mentioned or () if isinstance(u, str)),
            agents_in_room=present,
            binding=binding,
            sender_agent=message.sender_agent,
            hop=hop_of(event),
            # The stale-chat gate concerns `!new` chats only.
            selected_agent=message.user.selected_agent if chat else None,
        )
