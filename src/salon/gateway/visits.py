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
import time
from collections.abc import Awaitable, Callable, Collection, Mapping

import structlog

from salon._exceptions import MatrixError, SalonError
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.metrics import VISITS_ENDED
from salon.store import Store
from salon.store.delegations import DelegationDirection
from salon.store.records import now_ms
from salon.supervisor import LoopHandle
from salon.turns.voices import leave_joined, room_owner

log = structlog.get_logger("salon.gateway.visits")

Visit = tuple[AgentId, RoomId]
VisitUse = Callable[[str, RoomId], Awaitable[None]]
"""Told before an agent joins or posts in a room it may be visiting (see VisitEnder.use)."""


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
    agent_apis: Mapping[AgentId, MatrixAPI],
    rooms: Mapping[AgentId, RoomId],
    store: Store,
    joined: Mapping[AgentId, Collection[RoomId]] | None = None,
) -> None:
    """At start: every agent leaves the other agents' rooms it is in, but where work
    resumed now will post. ``joined``: each agent's rooms, if known already (an agent
    in no other agent's room then costs no request)."""
    busy = await busy_visits(store)
    owner_of = {room: owner for owner, room in rooms.items()}
    for agent_id, api in agent_apis.items():
        known = joined.get(agent_id) if joined is not None else None
        candidates = owner_of if known is None else [r for r in known if r in owner_of]
        visited = {
            room: agent_apis[owner]
            for room in candidates
            if (owner := owner_of[room]) != agent_id
            and owner in agent_apis
            and (agent_id, room) not in busy
        }
        if visited:
            await end_visits(api, visited, "start")


async def no_visit(agent_id: str, room_id: RoomId) -> None:
    """The hook's default where no visits are tracked (unit tests, tools)."""


class VisitEnder:
    """While running: a visitor leaves a room it has had nothing to do in for
    ``idle_s`` (its last turn or delegation there, its last :meth:`use` of it, and
    the time it was first seen there). The maps are the gateway's live ones (a
    reload changes them). ``idle_s`` None: visits end at the next start only."""

    def __init__(
        self,
        store: Store,
        agent_apis: Mapping[AgentId, MatrixAPI],
        agent_rooms: Mapping[AgentId, RoomId],
        idle_s: float | None,
        on_left: Callable[[str], None] = lambda room_id: None,
    ) -> None:
        self.on_left = on_left  # what routing caches of the room's members is stale now
        self.store = store
        self.agent_apis = agent_apis
        self.agent_rooms = agent_rooms
        self.idle_s = idle_s
        # Idle since (monotonic): first seen joined, or the last use() if later.
        self._since: dict[Visit, float] = {}
        self._locks: dict[Visit, asyncio.Lock] = {}

    async def use(self, agent_id: str, room_id: RoomId) -> None:
        """Called before an agent joins or posts in a room it may be visiting (a
        mention, a delegation, a cron job): waits for a leave in progress there to end
        (the caller then finds it out and joins again) and keeps the visit for
        ``idle_s`` from now, however long its turn takes to be recorded. Any other
        room (the agent's own, a person's) is no visit: nothing to do."""
        owner = room_owner(self.agent_rooms, room_id)
        if owner is None or owner == agent_id:
            return
        visit = (AgentId(agent_id), RoomId(room_id))
        async with self._locks.setdefault(visit, asyncio.Lock()):
            self._since[visit] = time.monotonic()

    def _idle(self, visit: Visit, now: float) -> bool:
        assert self.idle_s is not None
        return now - self._since.get(visit, now) >= self.idle_s

    async def sweep(self) -> list[Visit]:
        """End the visits that are due now; returns them."""
        if self.idle_s is None:
            return []
        busy = await busy_visits(self.store)
        now, wall = time.monotonic(), now_ms()
        present: set[Visit] = set()
        ended: list[Visit] = []
        # Room → owner once per sweep: each agent's rooms are looked up in it (with a
        # thousand agents, not every room for every agent).
        owner_of = {room: owner for owner, room in list(self.agent_rooms.items())}
        for agent_id, api in list(self.agent_apis.items()):
            try:
                joined = await api.joined_rooms()
            except MatrixError as e:  # the others are still swept
                log.warning("visit.sweep_failed", agent=agent_id, error=str(e))
                continue
            for room in joined:
                owner = owner_of.get(room)
                owner_api = self.agent_apis.get(owner) if owner is not None else None
                if owner is None or owner == agent_id or owner_api is None:
                    continue
                visit = (agent_id, room)
                present.add(visit)
                self._since.setdefault(visit, now)  # first seen joined
                if visit in busy or not self._idle(visit, now):
                    continue
                last = await self.store.turns.last_activity(agent_id, room)
                if last is not None and wall - last < self.idle_s * 1000:
                    continue
                async with self._locks.setdefault(visit, asyncio.Lock()):
                    if not self._idle(visit, time.monotonic()):
                        continue  # used while this sweep was deciding
                    if await end_visits(api, {room: owner_api}, "idle"):
                        self.on_left(room)
                        ended.append(visit)
                        log.info("visit.ended", agent=agent_id, room_id=room)
        # Forget what is over, so a visit that begins again gets its full grace.
        self._since = {
            v: t
            for v, t in self._since.items()
            if v not in ended and (v in present or now - t < self.idle_s)
        }
        self._locks = {v: k for v, k in self._locks.items() if k.locked() or v in self._since}
        return ended

    async def run(self, handle: LoopHandle) -> None:
        assert self.idle_s is not None
        every = min(60.0, max(self.idle_s / 4, 0.5))
        handle.healthy()
        while True:
            # Not at once: a first sweep only notes the visits (none is idle yet),
            # and its question to every agent landed on the homeserver just when
            # the messages that waited for a restart were being answered.
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except SalonError as e:  # the store, say: the next sweep tries again
                log.warning("visit.sweep_failed", error=str(e))
            handle.healthy()
