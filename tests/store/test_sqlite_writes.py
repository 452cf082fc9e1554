"""SQLite writes take no lock of their own, and the statements issued in one pass of
the event loop go to the connection's thread in one trip (a lock held each write back
until the one before it came back, a trip apiece on the path of every message). Each
still runs on its own; another task's open transaction still holds them back, and its
rollback never takes them with it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from salon._exceptions import StoreError
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


async def test_concurrent_statements_go_to_the_thread_together(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Statements of several tasks issued together: one trip, none waiting for another."""
    db = sqlite_db(store)
    held = threading.Event()
    # Keep the connection's thread busy, so whatever is queued behind it stays queued.
    blocker = asyncio.ensure_future(db._conn._execute(held.wait, 5))
    trips: list[int] = []
    trip = db._trip

    def counted(raw: Any, jobs: list[Any]) -> Any:
        trips.append(len(jobs))
        return trip(raw, jobs)

    monkeypatch.setattr(db, "_trip", counted)
    statements = [
        *(
            db.execute("INSERT INTO kv (key, value) VALUES ($1, $2)", f"k{n}", "v")
            for n in range(3)
        ),
        db.batch([("DELETE FROM kv WHERE key = $1", ("k0",))]),
        db.fetchall("SELECT value FROM kv WHERE key = $1", "k1"),
    ]
    tasks = [asyncio.ensure_future(s) for s in statements]
    try:
        for _ in range(1000):  # up to 10 s: they are queued at once, or never
            if sum(trips) >= 5:
                break
            await asyncio.sleep(0.01)
        assert trips == [5], "statements waited for one another, or went one trip apiece"
    finally:
        held.set()
        await blocker
    counts = await asyncio.gather(*tasks)
    assert counts[:4] == [1, 1, 1, [1]]
    assert [tuple(r) for r in counts[4]] == [("v",)]  # in order: after the insert of k1
    assert await store.kv.get("k0") is None and await store.kv.get("k2") == "v"


async def test_a_failing_statement_fails_alone(store: Store) -> None:
    db = sqlite_db(store)
    results = await asyncio.gather(
        db.execute("INSERT INTO kv (key, value) VALUES ($1, $2)", "a", "1"),
        db.execute("INSERT INTO no_such_table (x) VALUES ($1)", 1),
        db.execute("INSERT INTO kv (key, value) VALUES ($1, $2)", "b", "2"),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], StoreError) and "no_such_table" in str(results[1])
    assert await store.kv.get("a") == "1" and await store.kv.get("b") == "2"


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


async def test_a_statement_after_close_fails_instead_of_hanging(tmp_path: Path) -> None:
    opened = await Store.open(f"sqlite:///{tmp_path / 'closed.db'}")
    await opened.close()
    with pytest.raises(ValueError, match="no active connection"):
        await asyncio.wait_for(opened.kv.get("k"), 10)


async def test_a_trip_to_the_thread_starts_no_task(store: Store) -> None:
    """A trip goes straight onto the connection thread's queue: no coroutine wrapped in
    a task of its own (one per trip, on the path of every message)."""
    await store.kv.set("warm", "1")
    loop = asyncio.get_running_loop()
    started: list[str] = []
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        started.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        await store.kv.set("k", "v")
        assert await store.kv.get("k") == "v"
        await store.db.batch([("DELETE FROM kv WHERE key = $1", ("k",))])
    finally:
        loop.set_task_factory(previous)
    assert started == []
    assert await store.kv.get("k") is None
