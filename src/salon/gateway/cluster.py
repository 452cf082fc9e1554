"""Several gateway processes on one store and one homeserver.

Each process claims what it handles (inbox rooms, open turns) under its owner id
for ``cluster.lease_s`` seconds; this loop is its heartbeat: it extends those
claims, holds or seeks the ``leader`` lease (the janitors, the agents'
heartbeats, the invitation joiner, the visit ender and the status publisher run
in the leader only), claims open turns whose owner died, and wakes the
dispatcher (and the joiner) so what another process admitted is seen. A process
killed with -9 stops beating; once its leases run out (within ``lease_s``) the
others finish its work. A clean stop gives every claim back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from salon.config.models import SalonConfig
from salon.gateway.dispatcher import SQLITE_OWNER
from salon.leadership import Leadership
from salon.store import Store
from salon.store.leases import LEADER, Holder
from salon.supervisor import LoopHandle

log = structlog.get_logger("salon.gateway.cluster")


def holder_for(config: SalonConfig) -> Holder:
    """This process's owner id (``cluster.instance``, else per life on PostgreSQL)."""
    cluster = config.cluster
    # A lone SQLite store serves one process: a fixed id resumes its claims at once.
    owner = cluster.instance or (SQLITE_OWNER if config.store.is_sqlite else None)
    return Holder(owner or Holder.new_owner_id(), int(cluster.lease_s * 1000))


class Cluster:
    """This process among the others sharing the store."""

    def __init__(self, store: Store, holder: Holder) -> None:
        self.store = store
        self.holder = holder
        self.leadership = Leadership(leading=False)
        self.resume: Callable[[], Awaitable[int]] | None = None  # claims dead owners' turns
        self.wake: Callable[[], None] | None = None  # the dispatcher: read the inbox again

    @property
    def tick_s(self) -> float:
        """How often claims are extended: three beats to a lease."""
        return self.holder.lease_ms / 3000

    async def beat(self) -> None:
        """Extend this process's claims, hold or seek leadership, take over dead work."""
        owner, until = self.holder.owner, self.holder.until()
        await self.store.inbox.extend(owner, until)
        await self.store.turns.extend(owner, until)
        leading = await self.store.leases.acquire(LEADER, owner, until)
        if leading != self.leadership.leading:
            log.info("cluster.leader" if leading else "cluster.follower", owner=owner)
        self.leadership.set(leading)
        if self.resume is not None and (resumed := await self.resume()):
            log.info("cluster.resumed_turns", turns=resumed, owner=owner)
        if self.wake is not None:
            self.wake()

    async def run(self, handle: LoopHandle) -> None:
        """Beat every :attr:`tick_s` (a supervised loop)."""
        while True:
            await self.beat()
            handle.healthy()
            await asyncio.sleep(self.tick_s)

    async def release(self) -> None:
        """Give every claim back (a clean stop), so the others take them at once."""
        owner = self.holder.owner
        await self.store.inbox.release(owner)
        await self.store.turns.release_all(owner)
        await self.store.leases.release(LEADER, owner)
        self.leadership.set(False)


@contextlib.asynccontextmanager
async def clustering(store: Store, holder: Holder) -> AsyncIterator[Cluster]:
    """This process's place among the others: leading or not from the start; at the
    end (after the turns and the dispatcher stopped) its claims are given back."""
    cluster = Cluster(store, holder)
    leading = await store.leases.acquire(LEADER, holder.owner, holder.until())
    cluster.leadership.set(leading)
    log.info("cluster.joined", owner=holder.owner, leader=leading)
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):  # the store may be the reason we stop
            await cluster.release()
