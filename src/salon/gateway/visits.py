"""Agents visiting each other's rooms, and leaving once their business there is done.

An agent joins another agent's room to delegate there, or when it is mentioned
there (see voices). A visitor that stays costs the homeserver work on every reply
in that room, so it leaves again: at start, and while running once it has had
nothing to do there for ``space.visit_idle_s``. Never while work of its own will
still post there (an unfinished turn, an open or unreported delegation). The
owner invites it again, so it can come back when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

import structlog

from salon._exceptions import MatrixError, SalonError
from salon.gateway.voices import leave_joined
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.metrics import VISITS_ENDED
from salon.store import Store
from salon.store.delegations import DelegationDirection
from salon.store.records import now_ms
from salon.supervisor import LoopHandle

log = structlog.get_logger("salon.gateway.visits")

Visit = tuple[AgentId, RoomId]


async def busy_visits(store: Store) -> set[Visit]:
    """(agent, room) pairs where work of the agent will still post."""
    busy = {(AgentId(t.agent_id), RoomId(t.room_id)) for t in await store.turns.unfinished()}
    out = DelegationDirection.OUT
    for d in [*await store.delegations.open(out), *await store.delegations.undelivered(out)]:
        agent = AgentId(d.from_agent)
        busy |= {(agent, RoomId(d.target_room)), (agent, RoomId(d.origin_room or ""))}
    return busy


async def end_visits(
    visitor: MatrixAPI, rooms: Mapping[RoomId, MatrixAPI], reason: str
) -> list[RoomId]:
    """``visitor`` leaves those of ``rooms`` it is in; each room's owner (the value)
    invites it again. Returns the rooms it left."""
    left = await leave_joined(visitor, list(rooms))
    for room_id in left:
        try:
            await rooms[room_id].invite(room_id, visitor.user_id)
        except MatrixError as e:  # a delegation or mention invites again on demand
            log.warning("room.reinvite_failed", room_id=room_id, error=str(e))
        VISITS_ENDED.labels(reason=reason).inc()
    return left


async def visitors_leave(
    agent_apis: Mapping[AgentId, MatrixAPI], rooms: Mapping[AgentId, RoomId], store: Store
) -> None:
    """At start: every agent leaves the other agents' rooms it is in, but where work
    resumed now will post."""
    busy = await busy_visits(store)
    for agent_id, api in agent_apis.items():
        visited = {
            room: agent_apis[owner]
            for owner, room in rooms.items()
            if owner != agent_id and owner in agent_apis and (agent_id, room) not in busy
        }
        await end_visits(api, visited, "start")


class VisitEnder:
    """While running: a visitor leaves a room it has had nothing to do in for
    ``idle_s`` (its last turn or delegation there, and the time it was first seen
    there, so a visitor that just joined is not sent away before its turn is
    recorded). The maps are the gateway's live ones (a reload changes them)."""

    def __init__(
        self,
        store: Store,
        agent_apis: Mapping[AgentId, MatrixAPI],
        agent_rooms: Mapping[AgentId, RoomId],
        idle_s: float,
        on_left: Callable[[str], None] = lambda room_id: None,
    ) -> None:
        self.on_left = on_left  # what routing caches of the room's members is stale now
        self.store = store
        self.agent_apis = agent_apis
        self.agent_rooms = agent_rooms
        self.idle_s = idle_s
        self._seen: dict[Visit, float] = {}  # monotonic time first seen joined

    async def sweep(self) -> list[Visit]:
        """End the visits that are due now; returns them."""
        busy = await busy_visits(self.store)
        now, wall = time.monotonic(), now_ms()
        present: set[Visit] = set()
        ended: list[Visit] = []
        for agent_id, api in list(self.agent_apis.items()):
            joined = set(await api.joined_rooms())
            due: dict[RoomId, MatrixAPI] = {}
            for owner, room in list(self.agent_rooms.items()):
                owner_api = self.agent_apis.get(owner)
                if owner == agent_id or room not in joined or owner_api is None:
                    continue
                visit = (agent_id, room)
                present.add(visit)
                first = self._seen.setdefault(visit, now)
                if visit in busy or now - first < self.idle_s:
                    continue
                last = await self.store.turns.last_activity(agent_id, room)
                if last is None or wall - last >= self.idle_s * 1000:
                    due[room] = owner_api
            for room in await end_visits(api, due, "idle"):
                self.on_left(room)
                ended.append((agent_id, room))
                log.info("visit.ended", agent=agent_id, room_id=room)
        # Forget what is over, so a visit that begins again gets its full grace.
        self._seen = {v: t for v, t in self._seen.items() if v in present and v not in ended}
        return ended

    async def run(self, handle: LoopHandle) -> None:
        every = min(60.0, max(self.idle_s / 4, 0.5))
        while True:
            with contextlib.suppress(SalonError):
                await self.sweep()
            handle.healthy()
            await asyncio.sleep(every)
