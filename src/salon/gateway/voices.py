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

log = structlog.get_logger("salon.gateway.voices")

ROUTER_VOICE = "router"
"""``com.salon.turn.agent`` of a notice the gateway itself sends (not an agent's turn)."""


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
        for agent_id, room in self.agent_rooms.items():
            if room == room_id:
                return agent_id
        return None

    def of(self, room_id: str) -> MatrixAPI:
        """The identity that is a member of ``room_id`` and acts there for the gateway."""
        agent_id = self.owner(room_id)
        if agent_id is not None:
            api = self.agent_apis.get(agent_id)
            if api is not None:
                return api
        return self.router


async def router_leaves(router: MatrixAPI, rooms: Iterable[RoomId]) -> list[RoomId]:
    """The router leaves those of ``rooms`` it is still in (rooms made before it stayed
    out of agent rooms, or a reload's new room); returns the rooms it left."""
    joined = set(await router.joined_rooms())
    left: list[RoomId] = []
    for room_id in rooms:
        if room_id not in joined:
            continue
        try:
            await router.leave(room_id)
        except MatrixError as e:
            # Only a cost, not a fault: the next start tries again.
            log.warning("router.leave_failed", room_id=room_id, error=str(e))
            continue
        left.append(room_id)
        log.info("router.left_agent_room", room_id=room_id)
    return left
