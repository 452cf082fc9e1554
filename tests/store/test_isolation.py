"""Reads never see another task's open transaction: not its uncommitted rows, and never
rows its rollback undoes (SQLite shares one connection; PostgreSQL has a pool)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from salon.store import Store


class Undo(Exception):
    """Raised inside a transaction to roll it back."""


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = await Store.open(store_url)
    yield store
    await store.close()


async def _read_while_open(store: Store, *, commit: bool) -> tuple[str | None, bool]:
    """Insert a row in a transaction; while it is open another task reads the row.
    Returns what the reader got and whether the transaction had ended by then."""
    ended = False
    reader: asyncio.Task[tuple[str | None, bool]] | None = None

    async def read() -> tuple[str | None, bool]:
        value = await store.kv.get("k")
        return value, ended

    with pytest.raises(Undo) if not commit else _nothing():
        async with store.db.transaction() as tx:
            await tx.execute("INSERT INTO kv (key, value) VALUES ($1, $2)", "k", "uncommitted")
            reader = asyncio.create_task(read())
            # Let the reader run and issue its read while the transaction is open (on
            # the shared SQLite connection it is queued ahead of what follows here).
            await asyncio.sleep(0)
            assert await tx.fetchval("SELECT value FROM kv WHERE key = $1", "k") == "uncommitted"
            await asyncio.sleep(0)
            if not commit:
                raise Undo
    ended = True
    assert reader is not None
    return await reader


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_a_rolled_back_row_is_never_read(store: Store) -> None:
    value, _ = await _read_while_open(store, commit=False)
    assert value is None, "the reader saw a row that was then rolled back"
    assert await store.kv.get("k") is None


async def test_a_row_is_read_only_once_committed(store: Store) -> None:
    value, ended = await _read_while_open(store, commit=True)
    assert value is None or ended, "the reader saw the row before its transaction committed"
    assert await store.kv.get("k") == "uncommitted"  # committed now


async def test_counters_taken_concurrently_never_repeat(store: Store) -> None:
    """PostgreSQL runs transactions side by side: a counter is one atomic upsert."""
    taken = await asyncio.gather(*(store.kv.next("seq") for _ in range(40)))
    assert sorted(taken) == list(range(1, 41))
    async with store.db.transaction():
        assert await store.kv.next("seq") == 41  # also inside a transaction
    assert await store.kv.get("seq") == "41"
