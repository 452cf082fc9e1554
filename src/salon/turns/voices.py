"""Which of the gateway's identities acts in a given room.

The router stays out of agent rooms. Every member of a room costs the homeserver
work on each event sent there (its sync is woken and answered, its push rules run),
and an agent's own room is where most replies go: with the router as a third member
a reply cost measurably more than a bare bot's. So in an agent's room the agent
itself speaks for the gateway (command answers, invitations, reading history, its
Space entry), and everywhere else (lobby, Space, `!new` chats, rooms people made)
the router does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

from salon._exceptions import MatrixError
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import Invite
from salon.roster import Roster
from salon.store.records import RoomKind, RoomRecord

log = structlog.get_logger("salon.turns.voices")

ROUTER_VOICE = "router"
"""``com.salon.turn.agent`` of a notice the gateway itself sends (not an agent's turn)."""
GATEWAY_MARK = "gateway"
"""``com.salon.turn.gateway: true`` marks such a notice beyond doubt (an agent may be
called ``router``), whoever sent it."""


class RoomVoices:
    """Answers "as whom does the gateway act in this room" from live maps (a reload
    adds and removes agents in place, so this never holds a stale copy)."""

    def __init__(
        self,
        router: MatrixAPI,
        agent_apis: Mapping[AgentId, MatrixAPI],
        agent_rooms: Mapping[AgentId, RoomId],
    ) -> None:
        self.router = router
        self.agent_apis = agent_apis
        self.agent_rooms = agent_rooms

    def owner(self, room_id: str) -> AgentId | None:
        """The hosted agent whose own room this is, if it is one."""
        return room_owner(self.agent_rooms, room_id)

    def of(self, room_id: str, room: RoomRecord | None = None) -> MatrixAPI:
        """The identity that is a member of ``room_id`` and acts there for the gateway
        (``room``: what the store knows of it; a `!new` chat is its agent's, the router
        leaves it once made)."""
        chat = room is not None and room.kind is RoomKind.CHAT and room.agent_id
        agent_id = AgentId(chat) if chat else self.owner(room_id)
        if agent_id is not None:
            api = self.agent_apis.get(agent_id)
            if api is not None:
                return api
        return self.router


def room_owner(agent_rooms: Mapping[AgentId, RoomId], room_id: str) -> AgentId | None:
    """The hosted agent whose own room ``room_id`` is, if any."""
    # The gateway's registry keeps an index (asked on every message, for every agent).
    indexed = getattr(agent_rooms, "owner_of_room", None)
    if indexed is not None:
        owner: AgentId | None = indexed(room_id)
        return owner
    return next((a for a, room in agent_rooms.items() if room == room_id), None)


async def leave_joined(api: MatrixAPI, rooms: Iterable[RoomId]) -> list[RoomId]:
    """``api`` leaves those of ``rooms`` it is in; returns the rooms it left. At start:
    the router leaves agent rooms (made by it in older versions), and each agent the
    other agents' rooms it joined to delegate or answer a mention, so a room's
    members stay its owner and its people."""
    joined = set(await api.joined_rooms())
    left: list[RoomId] = []
    for room_id in rooms:
        if room_id not in joined:
            continue
        try:
            await api.leave(room_id)
        except MatrixError as e:
            # Only a cost, not a fault: the next start tries again.
            log.warning("room.leave_failed", user=api.user_id, room_id=room_id, error=str(e))
            continue
        left.append(room_id)
        log.info("room.left", user=api.user_id, room_id=room_id)
    return left


def is_visit(roster: Roster, voices: RoomVoices, invite: Invite) -> bool:
    """Whether ``invite`` asks one of our agents into another agent's own room, as a
    visitor. Agents are invited into each other's rooms so they can delegate there,
    but join only when they do (or are mentioned there): a member that merely could
    delegate would cost the homeserver work on every reply in that room."""
    invited = roster.hosted_agent_of(invite.invited)
    if invited is None:
        return False
    owner = voices.owner(invite.room_id)
    if owner is not None:
        # Whoever sent it (the owner, or the router in rooms of older versions).
        return owner != invited
    inviter = roster.get(roster.agent_of(invite.sender) or "")
    # A peer's agent invites ours only into its own room.
    return inviter is not None and not inviter.hosted
