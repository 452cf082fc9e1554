"""A turn's session messages are added, and the session trimmed, in one atomic trip
to the store: it runs after every reply, and a transaction of five or six trips
(holding every reader back meanwhile) was a measured share of each message's cost."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from salon.store import Store
from salon.store.sessions import _TRIM_SQL
from salon.store.sqlite import SqliteDatabase, _sqlite_sql


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_append_and_trim_are_one_trip_no_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.sessions.max_messages = 3
    db = store.sessions._db
    trips: list[str] = []
    batch, transaction = db.batch, db.transaction

    async def counted_batch(statements: Any) -> list[int]:
        trips.append("batch")
        return await batch(statements)

    def counted_transaction() -> Any:
        trips.append("transaction")
        return transaction()

    await store.sessions.append_turn("s", "coder", "$t0", [("user", "q0", 1)])
    monkeypatch.setattr(db, "batch", counted_batch)
    monkeypatch.setattr(db, "transaction", counted_transaction)
    for n in range(1, 4):
        await store.sessions.append_turn(
            "s", "coder", f"$t{n}", [("user", f"q{n}", 1), ("assistant", f"a{n}", 1)]
        )
    assert trips == ["batch"] * 3
    kept = await store.sessions.messages("s", "coder")
    # The newest 3 messages, whole turns: $t3's two, and $t2 cut whole.
    assert [(m.turn_id, m.content) for m in kept] == [("$t3", "q3"), ("$t3", "a3")]
    # A replayed turn adds nothing.
    await store.sessions.append_turn("s", "coder", "$t3", [("user", "q3", 1)])
    assert len(await store.sessions.messages("s", "coder")) == 2


async def test_a_chat_id_is_read_from_the_store_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allocated chat ids never change (no sessions row is deleted or updated): a turn
    reads its session's from memory, where two store reads a turn went before."""
    first = await store.sessions.chat_id("s", "coder")
    db = store.sessions._db
    reads: list[str] = []
    fetchall = db.fetchall

    async def counted(sql: str, *args: Any) -> Any:
        reads.append(sql)
        return await fetchall(sql, *args)

    monkeypatch.setattr(db, "fetchall", counted)
    assert await store.sessions.chat_id("s", "coder") == first
    await store.sessions.append_turn("s", "coder", "$t1", [("user", "q1", 1)])
    assert reads == []
    # Another process (its own Sessions) reads the same id from the store.
    other = type(store.sessions)(db)
    assert await other.chat_id("s", "coder") == first
    assert len(reads) == 1


async def test_the_trim_reads_the_boundary_not_the_whole_session(tmp_path: Path) -> None:
    """At the bound (where a long-lived session always is) each append trims: the trim
    must look at the rows at and below the boundary, not walk the whole session (its
    OR-ed WHERE did: ~3x the work, most of the SQLite thread's time per message)."""
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        for n in range(201):
            await store.sessions.append_turn(
                "s", "coder", f"$t{n}", [("user", f"q{n}", 1), ("assistant", f"a{n}", 1)]
            )
        db = store.sessions._db
        assert isinstance(db, SqliteDatabase)
        sql = _sqlite_sql(_TRIM_SQL)

        def trim(conn: sqlite3.Connection) -> tuple[int, int]:
            steps = [0]

            def step() -> int:
                steps[0] += 1
                return 0

            conn.set_progress_handler(step, 1)  # one call per SQLite VM instruction
            try:
                return conn.execute(sql, ("s", 400)).rowcount, steps[0]
            finally:
                conn.set_progress_handler(None, 1)

        deleted, steps = await db._conn._execute(trim, db._conn._conn)
        assert deleted == 2  # the oldest turn, whole
        # ~2,600 instructions, against ~8,500 for the OR-ed WHERE (SQLite 3.40).
        assert steps < 4500, steps
        kept = await store.sessions.messages("s", "coder", limit=1000)
        assert len(kept) == 400 and kept[0].turn_id == "$t1"
    finally:
        await store.close()
