"""Appservice transactions in the store, on both backends: ids admitted, transactions
parked while the gateway starts (kept in arrival order, across a reopen), and which of
the homeserver's numbers any process took."""

from __future__ import annotations

from salon.store import Store
from salon.store.records import now_ms


async def test_parked_transactions_keep_their_order_across_a_reopen(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        await store.appservice_txns.park("k2", 2, '{"events": [2]}')
        await store.appservice_txns.park("k1", None, '{"events": [1]}')
        await store.appservice_txns.park("k2", 2, '{"events": [2]}')  # a repeat: no-op
    finally:
        await store.close()
    store = await Store.open(store_url)  # a crash before the start admitted them
    try:
        kept = await store.appservice_txns.parked()
        assert [(p.txn_id, p.seq, p.body, p.tries) for p in kept] == [
            ("k2", 2, '{"events": [2]}', 0),
            ("k1", None, '{"events": [1]}', 0),
        ]
        assert all(abs(p.at - now_ms()) < 60_000 for p in kept)  # when parked
        await store.appservice_txns.unpark("k2")
        assert [p.txn_id for p in await store.appservice_txns.parked()] == ["k1"]
    finally:
        await store.close()


async def test_received_names_the_numbers_taken_admitted_or_parked(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        since = now_ms() - 1000
        await store.appservice_txns.record("a", 5)
        await store.appservice_txns.record("b")  # no number: never counts
        assert await store.appservice_txns.park("c", 7, "{}")
        assert not await store.appservice_txns.park("c", 7, "{}")  # kept already
        await store.appservice_txns.record("d", 5)  # the same number twice counts once
        txns = store.appservice_txns
        assert await txns.received(4, 8, since) == 2  # 5 and 7 of 5, 6, 7
        assert await txns.received(5, 7, since) == 0  # 6 only: nobody took it
        assert await txns.received(4, 8, now_ms() + 1000) == 0  # all too old
        assert await txns.received(5, 6, since) == 0
        assert await store.appservice_txns.seen("a") and not await store.appservice_txns.seen("c")
    finally:
        await store.close()


async def test_failed_tries_are_counted_then_set_aside_across_a_reopen(store_url: str) -> None:
    """A parked transaction whose admission fails: its tries and last error are kept
    (a restart counts on), at the bound it is set aside (kept, not due), and a retry
    makes it due again with its tries from 0."""
    store = await Store.open(store_url)
    try:
        txns = store.appservice_txns
        await txns.park("k1", 1, "{}")
        await txns.park("k2", 2, "{}")
        assert not await txns.failed("k1", "ValueError: first", 2)
    finally:
        await store.close()
    store = await Store.open(store_url)
    try:
        txns = store.appservice_txns
        [k1, _] = await txns.parked()
        assert (k1.tries, k1.reason, k1.set_aside_at) == (1, "ValueError: first", None)
        assert await txns.failed("k1", "ValueError: second", 2)  # the bound: set aside
        assert [p.txn_id for p in await txns.parked()] == ["k2"]
        [aside] = await txns.set_aside()
        assert (aside.txn_id, aside.tries, aside.reason) == ("k1", 2, "ValueError: second")
        assert aside.set_aside_at is not None and aside.set_aside_at >= now_ms() - 60_000
        assert await txns.retry("k2") == 0  # not set aside
        assert await txns.retry("k1") == 1
        assert [(p.txn_id, p.tries) for p in await txns.parked()] == [("k1", 0), ("k2", 0)]
        assert await txns.set_aside() == [] and await txns.retry() == 0
    finally:
        await store.close()
