"""The SQLite connection thread's side of the store: jobs, and one commit for many.

The statements the event loop issues in one pass go to the connection's thread as
one list of jobs (see ``SqliteDatabase._submit``). Run one by one, each write would
be a transaction of its own, and a commit apiece (WAL frames for every page it
touched) was most of that thread's time per message (bench/scale.py --part cost).
So consecutive writes (and the reads between them) run in one transaction:

- each job still stands alone: when one fails (a statement, or any of a ``batch``'s,
  which is all or nothing), the group is undone and every job runs again alone, so
  the failing one fails by itself and the others go on;
- no job's result is handed back before the commit: a caller that saw its write
  done saw it durable, exactly as before; if the commit fails, every job of the
  group fails;
- ``raw`` jobs (a ``transaction()``'s statements, the janitor's vacuum) run alone, in
  order, outside any group; so does a group that cannot take the write lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["read", "write", "batch", "raw"]
Result = tuple[bool, Any]  # (ok, value or the exception)


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work for the connection's thread."""

    run: Callable[[sqlite3.Connection], Any]
    kind: Kind


def counted(sql: str, args: tuple[Any, ...], kind: Kind = "write") -> Job:
    """One statement; its result is the number of rows it changed."""
    return Job(lambda conn: conn.execute(sql, args).rowcount, kind)


def fetched(sql: str, args: tuple[Any, ...], kind: Kind = "read") -> Job:
    """One statement and its rows (execute and fetch in one job: one trip, not three)."""
    return Job(lambda conn: conn.execute(sql, args).fetchall(), kind)


def batch(prepared: Sequence[tuple[str, tuple[Any, ...]]]) -> Job:
    """Statements applied all or nothing; the result is each one's changed-row count.

    A batch of one is a plain write: a statement is atomic on its own, and the
    savepoint around it cost two more (most messages' inbox and sync position writes)."""
    if len(prepared) == 1:
        sql, args = prepared[0]
        return Job(lambda conn: [conn.execute(sql, args).rowcount], "write")
    return Job(lambda conn: [conn.execute(sql, args).rowcount for sql, args in prepared], "batch")


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def run_jobs(conn: sqlite3.Connection, jobs: Sequence[Job]) -> list[Result]:
    """Run ``jobs`` in order (on the connection's thread); each one's (ok, value)."""
    results: list[Result] = []
    group: list[Job] = []
    for job in jobs:
        if job.kind == "raw":
            results += _group(conn, group)
            group = []
            results.append(_alone(conn, job))
        else:
            group.append(job)
    results += _group(conn, group)
    return results


def _alone(conn: sqlite3.Connection, job: Job) -> Result:
    """A job as if it were the only one: a batch in a transaction of its own."""
    if job.kind != "batch":
        return _attempt(conn, job)
    try:
        conn.execute("BEGIN IMMEDIATE")
        value = job.run(conn)
        conn.execute("COMMIT")
    except Exception as e:
        # Also when COMMIT itself failed: a transaction left open would swallow every
        # later write of this shared connection.
        rollback(conn)
        return False, e
    return True, value


def _attempt(conn: sqlite3.Connection, job: Job) -> Result:
    try:
        return True, job.run(conn)
    except Exception as e:
        return False, e


def _group(conn: sqlite3.Connection, group: list[Job]) -> list[Result]:
    """Consecutive jobs, in one transaction when there is more than one write."""
    if sum(job.kind != "read" for job in group) < 2 or conn.in_transaction:
        return [_alone(conn, job) for job in group]
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        return [_alone(conn, job) for job in group]  # each waits for the lock itself
    results: list[Result] = []
    for job in group:
        try:
            results.append((True, job.run(conn)))
        except Exception:
            # Rare (a constraint, a full disk, SQLite's own rollback): the group is
            # undone and each job runs again alone, so the failing one fails by itself
            # (a batch all or nothing) and the others take effect. No savepoint per
            # batch to undo just that one: two statements more for each, every message.
            rollback(conn)
            return [_alone(conn, j) for j in group]
    try:
        conn.execute("COMMIT")
    except Exception as e:  # the commit failed: none of the jobs took effect
        rollback(conn)
        return [(False, e)] * len(group)
    return results
