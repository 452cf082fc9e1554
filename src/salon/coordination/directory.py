"""What coordination needs to know about the agents: the roster, plus the API
handles and rooms of the agents this gateway hosts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.roster import Roster


@dataclass(frozen=True)
class Directory:
    """Who the agents are (the roster) and how to act as ours."""

    roster: Roster
    apis: Mapping[str, MatrixAPI]  # our agents only
    rooms: Mapping[str, RoomId]  # our agents' rooms

    def user_id(self, agent_id: str) -> UserId:
        """The Matrix user of an agent (ours or a peer's)."""
        return self.roster.user_id(agent_id)

    def agent_of(self, user_id: str) -> str | None:
        """The agent id behind a user id, if it is a known agent (ours or a peer's)."""
        return self.roster.agent_of(user_id)
