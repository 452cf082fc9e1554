"""The routing decision for one message, with the reason it was made."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from salon.ids import AgentId
from salon.store.records import RoomKind, RoomRecord


class Reason(StrEnum):
    AGENT_ROOM = "agent_room"
    NOBODY = "nobody"


@dataclass(frozen=True)
class RouteDecision:
    """Which agents answer, and why."""

    agents: tuple[AgentId, ...]
    reason: Reason


def route(room: RoomRecord | None, known_agents: set[str]) -> RouteDecision:
    """Decide by room binding: an agent's own room goes to that agent."""
    if (
        room is not None
        and room.kind is RoomKind.AGENT
        and not room.archived
        and room.agent_id in known_agents
    ):
        return RouteDecision((AgentId(room.agent_id),), Reason.AGENT_ROOM)
    return RouteDecision((), Reason.NOBODY)
