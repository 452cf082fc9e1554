"""Find-or-create rooms by alias and link them into a Space, race-safe.

Two starters creating the same alias at once: the loser gets ``M_ROOM_IN_USE``
and joins the winner's room instead, so every alias ends with one room.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from salon._exceptions import MatrixRequestError, NotFoundError, RoomInUseError
from salon.ids import RoomAlias, RoomId, UserId, server_of_user
from salon.matrix.api import MatrixAPI

log = structlog.get_logger("salon.matrix.space")

SPACE_CHILD = "m.space.child"
SPACE_PARENT = "m.space.parent"

# Synapse names an alias before its creator has joined the room: a starter that
# resolves it in that moment is told the room has no servers (404). It waits the
# creation out, this long at most.
JOIN_CREATING_ROOM_S = 10.0


@dataclass(frozen=True)
class RoomSpec:
    """What a room should look like if it has to be created."""

    alias_localpart: str
    name: str
    topic: str | None = None
    is_space: bool = False
    invite: Sequence[UserId] = ()
    power_users: Mapping[UserId, int] = field(default_factory=dict)
    initial_state: Sequence[Mapping[str, Any]] = ()


class SpaceManager:
    """Rooms owned by one identity (the router, or an agent for its own room), found by
    alias, cached briefly."""

    def __init__(self, api: MatrixAPI, *, cache_ttl_s: float = 60.0) -> None:
        self.api = api
        self.server_name = server_of_user(api.user_id)
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[RoomId, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # The members of a room just made here (the creator, those the creation
        # invited): the first invite_missing there asks the homeserver nothing.
        self._new_members: dict[RoomId, dict[UserId, str]] = {}

    def alias(self, localpart: str) -> RoomAlias:
        """The full alias for a localpart on this server."""
        return RoomAlias(f"#{localpart}:{self.server_name}")

    async def ensure_room(self, spec: RoomSpec) -> RoomId:
        """The room behind ``spec``'s alias: found, joined, or created; then invitations sent."""
        alias = self.alias(spec.alias_localpart)
        cached = self._cache.get(alias)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        # One lookup per alias at a time; concurrent callers share the result.
        lock = self._locks.setdefault(alias, asyncio.Lock())
        async with lock:
            cached = self._cache.get(alias)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            room_id = await self._find_or_create(alias, spec)
            await self.invite_missing(room_id, spec.invite)
            self._cache[alias] = (room_id, time.monotonic() + self._ttl)
            return room_id

    async def link(self, space_id: RoomId, child_id: RoomId) -> None:
        """Register ``child_id`` in the Space, both directions, with ``via`` (both rooms
        ours: see :meth:`add_child` and :meth:`set_parent` when they are not)."""
        await self.add_child(space_id, child_id)
        await self.set_parent(child_id, space_id)

    async def add_child(self, space_id: RoomId, child_id: RoomId) -> None:
        """List ``child_id`` in the Space (``m.space.child``, sent in the Space)."""
        via = [self.server_name]
        child = await self.api.get_state_event(space_id, SPACE_CHILD, child_id)
        if not child or child.get("via") != via:
            await self.api.send_state(space_id, SPACE_CHILD, {"via": via}, child_id)

    async def set_parent(self, child_id: RoomId, space_id: RoomId) -> None:
        """Name the Space as the room's canonical parent (``m.space.parent``, sent in
        the room, so by a member of it with power there)."""
        via = [self.server_name]
        parent = await self.api.get_state_event(child_id, SPACE_PARENT, space_id)
        if not parent or parent.get("via") != via:
            await self.api.send_state(
                child_id, SPACE_PARENT, {"via": via, "canonical": True}, space_id
            )

    async def unlink(self, space_id: RoomId, child_id: RoomId) -> None:
        """Take ``child_id`` off the Space's list (an empty ``m.space.child`` removes it);
        the room itself, and its history, stay."""
        await self.api.send_state(space_id, SPACE_CHILD, {}, child_id)

    async def _find_or_create(self, alias: RoomAlias, spec: RoomSpec) -> RoomId:
        try:
            room_id, servers = await self.api.resolve_alias(alias)
        except NotFoundError:
            try:
                room_id = await self.api.create_room(
                    alias_localpart=spec.alias_localpart,
                    name=spec.name,
                    topic=spec.topic,
                    invite=spec.invite,
                    initial_state=[dict(s) for s in spec.initial_state],
                    creation_content={"type": "m.space"} if spec.is_space else None,
                    power_level_override=self._power_levels(spec),
                )
                log.info("room.created", alias=alias, room_id=room_id)
                members = {UserId(u): "invite" for u in spec.invite}
                self._new_members[room_id] = {**members, self.api.user_id: "join"}
                return room_id
            except RoomInUseError:
                # Lost the creation race: the winner's room is the room.
                log.info("room.create_race_lost", alias=alias)
                room_id, servers = await self.api.resolve_alias(alias)
        if room_id not in await self.api.joined_rooms():
            await self._join_created(room_id, servers or [self.server_name])
            log.info("room.joined", alias=alias, room_id=room_id)
        return room_id

    async def _join_created(self, room_id: RoomId, via: Sequence[str]) -> None:
        """Join a room found by alias, waiting out a creation still under way."""
        deadline = time.monotonic() + JOIN_CREATING_ROOM_S
        pause = 0.05
        while True:
            try:
                await self.api.join(room_id, via)
                return
            except MatrixRequestError as e:
                if e.http_status != 404 or time.monotonic() + pause > deadline:
                    raise
                log.info("room.join_wait_creation", room_id=room_id, error=str(e))
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def invite_missing(self, room_id: RoomId, users: Sequence[UserId]) -> None:
        """Invite those of ``users`` neither joined to ``room_id`` nor invited already
        (agents invited as visitors stay invited: no call for them at each start)."""
        if not users:
            return
        members = self._new_members.pop(room_id, None)
        if members is None:
            members = await self.api.memberships(room_id)
        for user in users:
            if members.get(user) not in ("join", "invite"):
                await self.api.invite(room_id, user)

    def _power_levels(self, spec: RoomSpec) -> dict[str, Any]:
        # The creator is not listed: from room version 12 creators hold unbounded power
        # and the homeserver refuses to see them in `users`.
        users = {u: level for u, level in spec.power_users.items() if u != self.api.user_id}
        # An empty `users` would replace the default one (the creator at 100 in room
        # versions before 12), so it is only sent when there is someone to list.
        levels: dict[str, Any] = {"users": users} if users else {}
        if spec.is_space:
            # Only the owner arranges the Space's children.
            levels["events_default"] = 100
        return levels
