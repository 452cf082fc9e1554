"""The router takes over the rooms of an agent that is no longer hosted.

An agent's own room and its `!new` chats have only the agent and people in them
(see voices). When the agent goes (removed from the config, a session agent
ended), somebody must stay there for the gateway, or commands in those rooms get
no answer and the API cannot read them: the router joins, invited by the departing
agent. A reload does this at once (see live); an agent removed while the gateway
was down is found at the next start, and the router is brought in then, the
former agent logged in once for the invitation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping

import structlog

from salon._exceptions import MatrixError, SalonError
from salon.gateway.visits import busy_visits
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.membership import join_or_be_invited
from salon.store import Store
from salon.store.records import RoomKind
from salon.turns.voices import leave_joined

log = structlog.get_logger("salon.gateway.handover")

FormerLogin = Callable[[AgentId, UserId | None], Awaitable[MatrixAPI]]
"""Logs a former agent in (its recorded user id, if known) for the invitations."""


async def rooms_of(store: Store, agent_id: AgentId, own: RoomId | None = None) -> list[RoomId]:
    """An agent's own room (``own``, else the one recorded) and its active chats."""
    if own is None:
        record = await store.rooms.agent_room(agent_id)
        own = RoomId(record.room_id) if record is not None else None
    chats = [RoomId(c.room_id) for c in await store.rooms.active_chats() if c.agent_id == agent_id]
    return [*([own] if own else []), *chats]


async def hand_over(
    router: MatrixAPI, agent_id: AgentId, rooms: Collection[RoomId], former: MatrixAPI | None
) -> list[RoomId]:
    """The router joins ``rooms`` (``former``, the agent leaving, invites it where it
    must be); returns the rooms it is in now. A failure is logged, not raised: the
    next start tries again."""
    taken: list[RoomId] = []
    for room_id in rooms:
        try:
            await join_or_be_invited(router, room_id, former)
        except SalonError as e:
            log.warning("room.hand_over_failed", agent=agent_id, room_id=room_id, error=str(e))
            continue
        taken.append(room_id)
        log.info("room.handed_over", agent=agent_id, room_id=room_id)
    return taken


async def take_over_orphans(
    router: MatrixAPI,
    store: Store,
    current: Collection[str],
    login: FormerLogin,
    *,
    unlink: Callable[[RoomId], Awaitable[None]] | None = None,
    visitors: Mapping[AgentId, MatrixAPI] | None = None,
) -> list[RoomId]:
    """At start: the router takes over the rooms of agents no longer configured
    (``current``: the hosted agents and the peers' ones) that it is not in yet; such
    an agent's own room also leaves the Space's list (``unlink``) and ``visitors``
    leave it, as a reload does (see live). Returns the rooms taken."""
    joined = set(await router.joined_rooms())
    records = [*await store.rooms.agent_rooms(), *await store.rooms.active_chats()]
    orphans: dict[AgentId, list[RoomId]] = {}
    owners: dict[AgentId, UserId] = {}
    own_rooms: set[RoomId] = set()
    for record in records:
        if not record.agent_id or record.agent_id in current:
            continue
        agent_id = AgentId(record.agent_id)
        if record.kind is RoomKind.AGENT:
            own_rooms.add(RoomId(record.room_id))
            if record.owner:
                owners[agent_id] = UserId(record.owner)
        if record.room_id not in joined:
            orphans.setdefault(agent_id, []).append(RoomId(record.room_id))
    taken: list[RoomId] = []
    for agent_id, rooms in orphans.items():
        former: MatrixAPI | None
        try:
            former = await login(agent_id, owners.get(agent_id))
        except SalonError as e:
            # Rooms that let the router in on its own (public) are still taken.
            log.warning("room.former_agent_login_failed", agent=agent_id, error=str(e))
            former = None
        taken += await hand_over(router, agent_id, rooms, former)
    gone = [room for room in taken if room in own_rooms]
    busy = await busy_visits(store) if gone else set()
    for room in gone:
        if unlink is not None:
            with contextlib.suppress(MatrixError):
                await unlink(room)
        for agent_id, api in (visitors or {}).items():
            if (agent_id, room) not in busy:
                await leave_joined(api, [room])
    return taken
