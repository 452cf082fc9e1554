"""A COMMIT that fails leaves the shared connection usable: no transaction is left
open to swallow later writes (a real SQLite file; a deferred foreign key fails at
COMMIT, as a full disk or a busy database would)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salon._exceptions import StoreError, is_transient
from salon.store.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(f"sqlite:///{tmp_path / 'x.db'}")
    await db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    await db.execute(
        "CREATE TABLE child (parent_id INTEGER"
        " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    yield db
    await db.close()


def committed(db: Database, table: str) -> list[int]:
    """What another connection sees in ``table``: only committed rows."""
    with sqlite3.connect(db.path) as other:
        return [row[0] for row in other.execute(f"SELECT * FROM {table} ORDER BY 1")]


async def test_failed_commit_of_a_batch_leaves_later_writes_committed(db: Database) -> None:
    # The orphan child passes the INSERT and fails at COMMIT.
    with pytest.raises(StoreError, match="FOREIGN KEY") as failed:
        await db.batch([("INSERT INTO child VALUES ($1)", (42,))])
    assert not is_transient(failed.value), "a constraint fails the same way again"
    assert committed(db, "child") == []

    assert await db.execute("INSERT INTO parent VALUES ($1)", 1) == 1
    assert committed(db, "parent") == [1], "not swallowed by a transaction left open"
    assert await db.batch([("INSERT INTO parent VALUES ($1)", (2,))]) == [1]

    assert committed(db, "parent") == [1, 2]
    assert [row[0] for row in await db.fetchall("SELECT * FROM child")] == []


async def test_failed_commit_of_a_transaction_leaves_later_writes_committed(
    db: Database,
) -> None:
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        async with db.transaction():
            await db.execute("INSERT INTO parent VALUES ($1)", 7)
            await db.execute("INSERT INTO child VALUES ($1)", 42)
    assert committed(db, "parent") == [], "the whole transaction was rolled back"

    assert await db.execute("INSERT INTO parent VALUES ($1)", 1) == 1
    assert committed(db, "parent") == [1], "not swallowed by a transaction left open"
    async with db.transaction():
        await db.execute("INSERT INTO parent VALUES ($1)", 2)
    assert await db.batch([("INSERT INTO parent VALUES ($1)", (3,))]) == [1]

    assert committed(db, "parent") == [1, 2, 3]


@pytest.mark.subprocess
def test_a_process_that_never_closes_the_store_still_exits(tmp_path: Path) -> None:
    # A crash path or a failed test that skips close() must not hang at exit on the
    # connection's thread (what it wrote is committed).
    script = (
        "import asyncio, sys\n"
        "from salon.store.db import Database\n"
        "kept = []\n"
        "async def main():\n"
        "    db = await Database.open(sys.argv[1])\n"
        "    kept.append(db)  # as a failed test's traceback keeps it\n"
        "    await db.execute('CREATE TABLE t (x INTEGER)')\n"
        "    await db.execute('INSERT INTO t VALUES (1)')\n"
        "asyncio.run(main())\n"
    )
    path = tmp_path / "open.db"
    done = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{path}"], timeout=20, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
