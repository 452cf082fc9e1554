"""The SQLite thread runs the statements of one loop pass under one commit, each job
still on its own: a failing statement or batch undoes only itself, a failed commit
fails every job of the group (none was reported done), and a group that cannot take
the write lock runs job by job (its reads still answer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from salon.store.sqlite_jobs import Job, batch, counted, fetched, run_jobs

INSERT = "INSERT INTO t (k) VALUES (?)"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    db.execute("CREATE TABLE child (k TEXT REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED)")
    yield db
    db.close()


def keys(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")]


def traced(conn: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    return seen


def test_writes_of_one_pass_share_one_commit(conn: sqlite3.Connection) -> None:
    seen = traced(conn)
    jobs = [counted(INSERT, (k,)) for k in "abc"] + [fetched("SELECT COUNT(*) FROM t", ())]
    results = run_jobs(conn, jobs)
    assert [ok for ok, _ in results] == [True] * 4
    assert [v for _, v in results[:3]] == [1, 1, 1] and results[3][1][0][0] == 3
    assert seen.count("BEGIN IMMEDIATE") == 1 and seen.count("COMMIT") == 1
    assert keys(conn) == ["a", "b", "c"] and not conn.in_transaction


def test_a_failing_statement_or_batch_undoes_only_itself(conn: sqlite3.Connection) -> None:
    results = run_jobs(
        conn,
        [
            counted(INSERT, ("a",)),
            counted(INSERT, ("a",)),  # duplicate key
            batch([(INSERT, ("b",)), (INSERT, ("a",))]),  # fails at its second: all undone
            counted(INSERT, ("c",)),
        ],
    )
    assert [ok for ok, _ in results] == [True, False, False, True]
    assert isinstance(results[1][1], sqlite3.IntegrityError)
    assert keys(conn) == ["a", "c"] and not conn.in_transaction


def test_a_failed_commit_fails_every_job_of_the_group(conn: sqlite3.Connection) -> None:
    results = run_jobs(
        conn,
        [
            counted(INSERT, ("a",)),
            counted("INSERT INTO child (k) VALUES (?)", ("nobody",)),  # fails at COMMIT
        ],
    )
    assert [ok for ok, _ in results] == [False, False]
    assert all(isinstance(v, sqlite3.IntegrityError) for _, v in results)
    assert keys(conn) == [] and not conn.in_transaction


def test_raw_jobs_run_alone_in_order(conn: sqlite3.Connection) -> None:
    seen = traced(conn)
    jobs = [
        counted(INSERT, ("a",)),
        counted(INSERT, ("b",)),
        Job(lambda c: c.execute("PRAGMA user_version").fetchone()[0], "raw"),
        counted(INSERT, ("c",)),
    ]
    assert [ok for ok, _ in run_jobs(conn, jobs)] == [True] * 4
    assert seen.index("COMMIT") < seen.index("PRAGMA user_version")
    assert seen.count("BEGIN IMMEDIATE") == 1  # the lone write after it needs none
    assert keys(conn) == ["a", "b", "c"]


def test_without_the_write_lock_jobs_run_one_by_one(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    conn.execute("INSERT INTO t (k) VALUES ('x')")
    conn.execute("PRAGMA busy_timeout=0")
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        results = run_jobs(
            conn,
            [counted(INSERT, ("a",)), fetched("SELECT k FROM t", ()), counted(INSERT, ("b",))],
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [ok for ok, _ in results] == [False, True, False]
    assert "locked" in str(results[0][1])
    assert [r[0] for r in results[1][1]] == ["x"]
    assert not conn.in_transaction


def test_a_batch_of_one_needs_no_savepoint(conn: sqlite3.Connection) -> None:
    """One statement is atomic on its own: no savepoint around it (two statements more,
    on most messages' inbox and sync position writes), and its failure still undoes
    only itself."""
    seen = traced(conn)
    results = run_jobs(
        conn,
        [
            counted(INSERT, ("a",)),
            batch([(INSERT, ("b",))]),
            batch([(INSERT, ("a",))]),  # duplicate key
            counted(INSERT, ("c",)),
        ],
    )
    assert [ok for ok, _ in results] == [True, True, False, True]
    assert results[1][1] == [1] and isinstance(results[2][1], sqlite3.IntegrityError)
    assert not [s for s in seen if s.startswith(("SAVEPOINT", "RELEASE"))]
    assert keys(conn) == ["a", "b", "c"] and not conn.in_transaction


def test_batches_of_a_group_need_no_savepoint_and_stay_all_or_nothing(
    conn: sqlite3.Connection,
) -> None:
    """Three batches a message (sync position, decision and admission, session): a
    savepoint around each was six statements more. A failure is rare: the group is
    undone then, and each job runs again alone."""
    seen = traced(conn)
    fine = run_jobs(conn, [batch([(INSERT, ("a",)), (INSERT, ("b",))]), counted(INSERT, ("c",))])
    assert [ok for ok, _ in fine] == [True, True] and fine[0][1] == [1, 1]
    assert seen.count("COMMIT") == 1
    assert not [s for s in seen if s.startswith(("SAVEPOINT", "RELEASE"))]
    failing = run_jobs(
        conn,
        [
            counted(INSERT, ("d",)),
            batch([(INSERT, ("e",)), (INSERT, ("a",))]),  # fails at its second: all undone
            fetched("SELECT COUNT(*) FROM t", ()),
            counted(INSERT, ("f",)),
        ],
    )
    assert [ok for ok, _ in failing] == [True, False, True, True]
    assert isinstance(failing[1][1], sqlite3.IntegrityError)
    assert failing[2][1][0][0] == 4  # a, b, c and d: the failed batch left nothing
    assert keys(conn) == ["a", "b", "c", "d", "f"] and not conn.in_transaction
