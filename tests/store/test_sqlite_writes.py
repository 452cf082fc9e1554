"""SQLite writes take no lock of their own: each is queued on the connection's thread
at once (a lock held each write back until the one before it came back, a round trip
apiece on the path of every message). Another task's open transaction still holds
them back, and its rollback never takes them with it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salon.store import Store
from salon.store.sqlite import SqliteDatabase


class Undo(Exception):
    """Raised inside a transaction to roll it back."""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path / 'salon.db'}")
    try:
        yield opened
    finally:
        await opened.close()


def sqlite_db(store: Store) -> SqliteDatabase:
    assert isinstance(store.db, SqliteDatabase)
    return store.db


async def test_concurrent_writes_are_queued_together(store: Store) -> None:
    db = sqlite_db(store)
    held = threading.Event()
    # Keep the connection's thread busy, so whatever is queued behind it stays queued.
    blocker = asyncio.ensure_future(db._conn._execute(held.wait, 5))
    writes = [
        asyncio.create_task(db.execute("INSERT INTO kv (key, value) VALUES ($1, $2)", f"k{n}", "v"))
        for n in range(3)
    ]
    writes.append(asyncio.create_task(db.batch([("DELETE FROM kv WHERE key = $1", ("k0",))])))
    try:
        for _ in range(200):  # up to 2 s: they are queued at once, or never
            if db._conn._tx.qsize() >= 4:
                break
            await asyncio.sleep(0.01)
        assert db._conn._tx.qsize() == 4, "each write waited for the one before it"
    finally:
        held.set()
        await blocker
    assert await asyncio.gather(*writes) == [1, 1, 1, [1]]
    assert await store.kv.get("k0") is None and await store.kv.get("k2") == "v"


async def test_a_write_waits_for_another_tasks_transaction_and_outlives_its_rollback(
    store: Store,
) -> None:
    db = sqlite_db(store)
    writer: asyncio.Task[int] | None = None
    with pytest.raises(Undo):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value) VALUES ($1, $2)", "tx", "undone")
            writer = asyncio.create_task(
                db.execute("INSERT INTO kv (key, value) VALUES ($1, $2)", "w", "kept")
            )
            await asyncio.sleep(0.05)
            assert not writer.done(), "the write went into another task's transaction"
            raise Undo
    assert writer is not None
    assert await writer == 1
    assert await store.kv.get("w") == "kept"
    assert await store.kv.get("tx") is None
