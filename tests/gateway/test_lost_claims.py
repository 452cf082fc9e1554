"""A gateway process whose lease ran out (paused, slow) while another claimed its work
since, on both backends: its inbox mark, defer and turn close write nothing, a row it
no longer holds is not handled at all, and each refused write is counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests.gateway.helpers import (
    ALICE,
    CODER_USER,
    ROUTER,
    event,
    eventually,
    make_roster,
    sample,
)

from salon.gateway.dispatcher import Dispatcher
from salon.matrix.events import InboundEvent
from salon.store import Store
from salon.store.leases import Holder
from salon.store.records import InboxItem, InboxState, TurnState, now_ms

ROOM = "!room:localhost"
LONG = 60_000
SHORT = 50  # ms: A's lease, run out by the time B claims


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two processes' connections to one database."""
    first, second = await Store.open(store_url), await Store.open(store_url)
    yield first, second
    await second.close()
    await first.close()


def lost(step: str) -> float:
    return sample("salon_claim_lost_total", what=step)


async def _taken_over(a: Store, b: Store, event_id: str) -> None:
    """A claims the row with a short lease, pauses past it, and B claims it."""
    assert [r.item.event_id for r in await a.inbox.claim("A", SHORT)] == [event_id]
    await asyncio.sleep(SHORT * 3 / 1000)
    assert [r.item.event_id for r in await b.inbox.claim("B", LONG)] == [event_id]


async def test_inbox_writes_of_a_former_owner_do_nothing(stores: tuple[Store, Store]) -> None:
    a, b = stores
    e = event(ROOM, ALICE, event_id="$1")
    await a.inbox.admit([_item(e)])
    await _taken_over(a, b, "$1")
    assert await a.inbox.hold("$1", "A", now_ms() + LONG) is False
    assert await a.inbox.mark("$1", InboxState.DONE, "handled", owner="A") is False
    assert await a.inbox.defer("$1", next_at=now_ms() + LONG, error="x", owner="A") is False
    row = await b.inbox.get("$1")
    assert row is not None and row.state is InboxState.NEW and row.attempts == 0
    assert await b.db.fetchval("SELECT owner FROM inbox WHERE event_id = $1", "$1") == "B"
    # The owner's own writes go through.
    assert await b.inbox.hold("$1", "B", now_ms() + LONG) is True
    assert await b.inbox.mark("$1", InboxState.DONE, "handled", owner="B") is True
    done = await b.inbox.get("$1")
    assert done is not None and done.state is InboxState.DONE


async def test_a_turn_closed_by_a_former_owner_stays_open(stores: tuple[Store, Store]) -> None:
    a, b = stores
    await a.turns.admit("$t", "echo", ROOM, owner="A", lease_until=now_ms() + SHORT)
    assert await a.turns.start("$t", "echo", "A", now_ms() + SHORT) is not None
    await asyncio.sleep(SHORT * 3 / 1000)  # A paused past its lease
    assert await b.turns.claim("$t", "echo", "B", now_ms() + LONG) is not None
    closed = await a.turns.finish("$t", "echo", TurnState.REPLIED, reply_event_id="$r", owner="A")
    assert closed is False
    turn = await b.turns.get("$t", "echo")
    assert turn is not None and turn.open and turn.reply_event_id is None and turn.owner == "B"
    assert await b.turns.finish("$t", "echo", TurnState.REPLIED, owner="B") is True


class Slow:
    """A handler that records what it handles and waits on ``gate`` first."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.gate = asyncio.Event()

    async def __call__(self, e: InboundEvent) -> tuple[InboxState, str]:
        self.seen.append(e.event_id)
        await self.gate.wait()
        return InboxState.DONE, "handled"


def _dispatcher(store: Store, handler: Slow, owner: str, lease_ms: int) -> Dispatcher:
    dispatcher = Dispatcher(
        store,
        roster=make_roster(),
        created_at={ROUTER: 0, CODER_USER: 0},
        holder=Holder(owner, lease_ms),
    )
    dispatcher.add_event_handler("m.room.message", handler)
    return dispatcher


async def test_a_row_another_process_claimed_since_is_not_handled(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    await a.inbox.admit([_item(event(ROOM, ALICE, event_id="$1"))])
    rows = await a.inbox.claim("A", SHORT)
    await asyncio.sleep(SHORT * 3 / 1000)  # A's lane waited past the lease
    assert len(await b.inbox.claim("B", LONG)) == 1
    handler = Slow()
    handler.gate.set()
    before = lost("inbox_hold")
    settled = await _dispatcher(a, handler, "A", SHORT)._handle_row(rows[0])
    assert settled is False and handler.seen == []  # B's to handle, not A's
    assert lost("inbox_hold") == before + 1
    row = await b.inbox.get("$1")
    assert row is not None and row.state is InboxState.NEW


async def test_a_handler_outliving_its_lease_does_not_mark_the_new_owners_row(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    await a.inbox.admit([_item(event(ROOM, ALICE, event_id="$1"))])
    rows = await a.inbox.claim("A", SHORT)
    handler = Slow()
    before = lost("inbox_mark")
    task = asyncio.create_task(_dispatcher(a, handler, "A", SHORT)._handle_row(rows[0]))
    await eventually(lambda: bool(handler.seen), what="the handler to start")
    await asyncio.sleep(SHORT * 3 / 1000)  # the handler is slow; A beats no more
    assert len(await b.inbox.claim("B", LONG)) == 1
    handler.gate.set()
    assert await task is False
    assert lost("inbox_mark") == before + 1
    row = await b.inbox.get("$1")
    assert row is not None and row.state is InboxState.NEW  # left for B
    assert await b.db.fetchval("SELECT owner FROM inbox WHERE event_id = $1", "$1") == "B"


def _item(e: InboundEvent) -> InboxItem:
    return InboxItem(e.event_id, e.room_id, e.sender, e.type, e.to_json(), 0, ROUTER)
