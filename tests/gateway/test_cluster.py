"""The cluster loop of several gateways on one store (both backends): one leader at a
time runs the leader-only loops, a dead leader is replaced once its lease runs out, a
clean stop hands over at once, and a dead owner's open turns are resumed here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests.gateway.helpers import eventually

from salon.config.models import SalonConfig
from salon.gateway.cluster import Cluster, clustering, holder_for
from salon.leadership import Leadership
from salon.store import Store
from salon.store.leases import Holder
from salon.store.records import now_ms
from salon.supervisor import Backoff, LoopHandle, Supervisor

LEASE_MS = 1_500


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    first, second = await Store.open(store_url), await Store.open(store_url)
    yield first, second
    await second.close()
    await first.close()


async def test_one_leader_and_a_dead_one_is_replaced_after_its_lease(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    # Leases of 1.5 s: the checks meant to fall within one do so on a loaded machine too.
    async with clustering(a, Holder("A", LEASE_MS)) as first:
        second = Cluster(b, Holder("B", LEASE_MS))
        await second.beat()
        assert first.leadership.leading and not second.leadership.leading
        await asyncio.sleep(0.15)
        await first.beat()  # the leader's heartbeat keeps it
        await asyncio.sleep(0.2)
        await second.beat()
        assert not second.leadership.leading
        await asyncio.sleep(LEASE_MS / 1000 + 0.1)  # the first stopped beating: killed
        await second.beat()
        assert second.leadership.leading
        await first.beat()
        assert not first.leadership.leading


async def test_a_clean_stop_hands_leadership_and_claims_over_at_once(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    await a.turns.admit("$t", "echo", "!r:x", owner="A", lease_until=now_ms() + 60_000)
    async with clustering(a, Holder("A", 60_000)) as first:
        assert first.leadership.leading
    second = Cluster(b, Holder("B", 60_000))
    resumed: list[str] = []

    async def resume() -> int:
        resumed.extend(t.event_id for t in await b.turns.unfinished("B"))
        return len(resumed)

    second.resume = resume
    await second.beat()
    assert second.leadership.leading
    assert resumed == ["$t"]  # given back by the clean stop, not after 60 s


async def test_leader_only_loops_run_while_leading_and_stop_when_not() -> None:
    supervisor = Supervisor(Backoff(initial_s=0.01, max_s=0.05))
    supervisor.leadership = Leadership(leading=False)
    runs: list[str] = []
    cancelled: list[str] = []

    async def janitor(handle: LoopHandle) -> None:
        runs.append("start")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("stop")
            raise

    supervisor.spawn("janitor", janitor, leader_only=True)
    try:
        await asyncio.sleep(0.05)
        assert runs == []
        supervisor.leadership.set(True)
        await eventually(lambda: runs == ["start"], what="the loop to start")
        supervisor.leadership.set(False)
        await eventually(lambda: cancelled == ["stop"], what="the loop to stop")
        supervisor.leadership.set(True)
        await eventually(lambda: runs == ["start", "start"], what="the loop to start again")
    finally:
        await supervisor.stop()


def test_the_owner_id_is_fixed_on_sqlite_and_per_life_on_postgresql() -> None:
    base = {"agents": {"echo": {"backend": {"type": "echo"}}}}
    assert holder_for(SalonConfig.model_validate(base)) == Holder("local", 10_000)
    pg = {**base, "store": {"url": "postgresql://db/salon"}, "cluster": {"lease_s": 5}}
    one, two = (holder_for(SalonConfig.model_validate(pg)) for _ in range(2))
    assert one.lease_ms == 5000 and one.owner != two.owner and one.owner != "local"
    named = {**pg, "cluster": {"instance": "gw-1"}}
    assert holder_for(SalonConfig.model_validate(named)).owner == "gw-1"
