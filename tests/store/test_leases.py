"""Claims of several gateway processes on one store, on both backends (a SQLite file,
a real PostgreSQL): two claimers never get the same inbox row or the same room at
once, a room's events go in order, a dead owner's claims are taken once they run out,
and an open turn or the leader lease has one holder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from salon.store import Store
from salon.store.leases import LEADER
from salon.store.records import InboxItem, InboxState, now_ms

LONG = 60_000
# A lease that runs out during the test: long enough that a loaded machine still makes
# the checks meant to fall within it in time.
SHORT = 1_500


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database: two processes' connections."""
    first = await Store.open(store_url)
    second = await Store.open(store_url)
    yield first, second
    await second.close()
    await first.close()


def _item(event_id: str, room: str, ts: int = 0) -> InboxItem:
    return InboxItem(event_id, room, "@u:x", "m.room.message", "{}", ts, "@bot:x")


async def test_two_claimers_racing_never_share_a_row_or_a_room(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    rooms = [f"!r{n}:x" for n in range(12)]
    await a.inbox.admit(
        [_item(f"$e{r}-{i}", room, i) for r, room in enumerate(rooms) for i in range(6)]
    )
    seen: dict[str, str] = {}  # event id -> owner that handled it
    for _ in range(20):
        got_a, got_b = await asyncio.gather(
            a.inbox.claim("A", LONG, rooms=5, per_room=2),
            b.inbox.claim("B", LONG, rooms=5, per_room=2),
        )
        ids_a = {r.item.event_id for r in got_a}
        ids_b = {r.item.event_id for r in got_b}
        assert not ids_a & ids_b
        # No room is held by both at once.
        assert not {r.item.room_id for r in got_a} & {r.item.room_id for r in got_b}
        # Each handles its first row of each room, then claims again.
        for owner, store, got in (("A", a, got_a), ("B", b, got_b)):
            firsts: dict[str, str] = {}
            for row in got:
                firsts.setdefault(row.item.room_id, row.item.event_id)
            for event_id in firsts.values():
                assert event_id not in seen
                seen[event_id] = owner
                await store.inbox.mark(event_id, InboxState.DONE)
        if len(seen) == 72:
            break
    assert len(seen) == 72
    assert set(seen.values()) == {"A", "B"}  # both did some of the work


async def test_a_room_held_by_a_live_owner_waits_and_keeps_its_order(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    await a.inbox.admit([_item("$1", "!r:x", 1), _item("$2", "!r:x", 2)])
    assert [r.item.event_id for r in await a.inbox.claim("A", LONG, per_room=2)] == ["$1", "$2"]
    await a.inbox.admit([_item("$3", "!r:x", 3)])
    assert await b.inbox.claim("B", LONG) == []  # A holds the room's head
    await a.inbox.mark("$1", InboxState.DONE)
    assert await b.inbox.claim("B", LONG) == []  # the next head ($2) is A's too
    await a.inbox.mark("$2", InboxState.DONE)
    assert [r.item.event_id for r in await b.inbox.claim("B", LONG)] == ["$3"]
    # A claiming again gets nothing of B's room; its own claims come back to it.
    assert await a.inbox.claim("A", LONG) == []
    assert [r.item.event_id for r in await b.inbox.claim("B", LONG)] == ["$3"]


async def test_a_claim_skips_the_rows_its_owner_has_in_hand(
    stores: tuple[Store, Store],
) -> None:
    a, _ = stores
    await a.inbox.admit([_item("$1", "!r:x", 1), _item("$2", "!r:x", 2), _item("$3", "!s:x", 3)])
    first = await a.inbox.claim("A", LONG, per_room=2)
    assert [r.item.event_id for r in first] == ["$1", "$2", "$3"]
    again = await a.inbox.claim("A", LONG, per_room=2, skip={"$1", "$3"})
    assert [r.item.event_id for r in again] == ["$2"]  # still this owner's, and due
    assert await a.inbox.claim("A", LONG, per_room=2, skip={"$1", "$2", "$3"}) == []
    # A row skipped is still claimed: the room's next head is not another owner's.
    await a.inbox.mark("$1", InboxState.DONE)
    await a.inbox.admit([_item("$4", "!r:x", 4)])
    assert [r.item.event_id for r in await a.inbox.claim("A", LONG, skip={"$2"})] == [
        "$3",
        "$4",
    ]


async def test_a_dead_owners_claims_are_taken_once_its_lease_runs_out(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    await a.inbox.admit([_item("$1", "!r:x", 1), _item("$2", "!s:x", 2)])
    assert len(await a.inbox.claim("A", SHORT)) == 2
    assert await b.inbox.claim("B", LONG) == []
    assert await a.inbox.extend("A", now_ms() + SHORT) == 2  # A's heartbeat
    await asyncio.sleep(0.15)
    assert await b.inbox.claim("B", LONG) == []  # extended: still A's
    await asyncio.sleep(SHORT / 1000 + 0.1)  # A stopped beating (killed)
    taken = await b.inbox.claim("B", LONG)
    assert [r.item.event_id for r in taken] == ["$1", "$2"]
    assert await b.db.fetchval("SELECT owner FROM inbox WHERE event_id = $1", "$1") == "B"
    # A clean stop gives claims back at once.
    assert await b.inbox.release("B") == 2
    assert len(await a.inbox.claim("A", LONG)) == 2


async def test_a_room_whose_head_waits_for_a_retry_is_nobodys(stores: tuple[Store, Store]) -> None:
    a, b = stores
    await a.inbox.admit([_item("$1", "!r:x", 1), _item("$2", "!r:x", 2)])
    await a.inbox.claim("A", 1)
    await a.inbox.defer("$1", next_at=now_ms() + LONG, error="homeserver down")
    await asyncio.sleep(0.01)
    assert await b.inbox.claim("B", LONG) == []  # $2 waits behind $1


async def test_an_open_turn_runs_in_one_process_until_its_lease_runs_out(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    await a.turns.admit("$t", "echo", "!r:x", owner="A", lease_until=now_ms() + SHORT)
    assert await b.turns.start("$t", "echo", "B", now_ms() + LONG) is None
    assert await b.turns.claim("$t", "echo", "B", now_ms() + LONG) is None
    assert [t.event_id for t in await b.turns.unfinished("B")] == []
    started = await a.turns.start("$t", "echo", "A", now_ms() + SHORT)
    assert started is not None and started.owner == "A"
    await asyncio.sleep(SHORT / 1000 + 0.1)  # A died mid-turn
    assert [t.event_id for t in await b.turns.unfinished("B")] == ["$t"]
    claimed = await b.turns.claim("$t", "echo", "B", now_ms() + LONG)
    assert claimed is not None and claimed.owner == "B"
    assert await a.turns.start("$t", "echo", "A", now_ms() + LONG) is None  # B's now
    assert await b.turns.start("$t", "echo", "B", now_ms() + LONG) is not None


async def test_the_leader_lease_has_one_holder(stores: tuple[Store, Store]) -> None:
    a, b = stores
    won = await asyncio.gather(
        a.leases.acquire(LEADER, "A", now_ms() + SHORT),
        b.leases.acquire(LEADER, "B", now_ms() + SHORT),
    )
    assert sorted(won) == [False, True]
    leader, other = ("A", "B") if won[0] else ("B", "A")
    assert await a.leases.holder(LEADER) == leader
    assert await a.leases.acquire(LEADER, leader, now_ms() + SHORT) is True  # extends
    assert await a.leases.acquire(LEADER, other, now_ms() + SHORT) is False
    await asyncio.sleep(SHORT / 1000 + 0.1)
    assert await a.leases.acquire(LEADER, other, now_ms() + LONG) is True
    await a.leases.release(LEADER, other)
    assert await a.leases.holder(LEADER) is None
