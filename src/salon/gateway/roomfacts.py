"""What routing needs to know about a room (aliases, agents present), cached briefly."""

from __future__ import annotations

import time
from collections.abc import Mapping

from salon._exceptions import MatrixError
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.roster import Roster

MEMBERS_TTL_S = 15.0
ALIAS_TTL_S = 120.0


class RoomFacts:
    """Answers "which agents are in this room" and "what is it called", from Matrix."""

    def __init__(self, apis: Mapping[UserId, MatrixAPI], roster: Roster):
        self.apis = apis
        self.roster = roster
        self._members: dict[str, tuple[frozenset[str], float]] = {}
        self._aliases: dict[str, tuple[tuple[str, ...], float]] = {}

    def forget(self, room_id: str) -> None:
        """Drop cached facts (someone of ours joined or left)."""
        self._members.pop(room_id, None)

    async def agents_in(self, room_id: str, via: UserId) -> frozenset[str]:
        """Agent ids joined to the room."""
        cached = self._members.get(room_id)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        try:
            members = await self.apis[via].joined_members(RoomId(room_id))
        except MatrixError:
            return frozenset()
        found = (self.roster.hosted_agent_of(m) for m in members)
        agents = frozenset(a for a in found if a is not None)
        self._members[room_id] = (agents, time.monotonic() + MEMBERS_TTL_S)
        return agents

    async def aliases(self, room_id: str, via: UserId, known: str | None) -> tuple[str, ...]:
        """The room's canonical and alternative aliases (plus the one Salon recorded)."""
        cached = self._aliases.get(room_id)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        found: list[str] = [known] if known else []
        try:
            content = await self.apis[via].get_state_event(
                RoomId(room_id), "m.room.canonical_alias"
            )
        except MatrixError:
            content = None
        if content:
            alias = content.get("alias")
            alt = content.get("alt_aliases")
            found += [alias] if isinstance(alias, str) else []
            found += [a for a in alt if isinstance(a, str)] if isinstance(alt, list) else []
        result = tuple(dict.fromkeys(found))
        self._aliases[room_id] = (result, time.monotonic() + ALIAS_TTL_S)
        return result
