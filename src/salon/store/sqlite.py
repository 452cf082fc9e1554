"""The embedded SQLite store: one connection in WAL mode, writes serialised.

One aiosqlite connection serves the process (one thread, statements in order). A
``transaction()`` spans several of them, so while one is open the connection is
inside it: another task's read would see its uncommitted rows (or rows a rollback
then undoes), and its writes would fall inside it. Other tasks' statements therefore
wait while a transaction is open. Otherwise (nearly always) a read or write waits for
nothing, not even another write in progress (one statement, or one ``batch``, is
atomic on the connection's thread): it is queued there at once, ahead of any
transaction that begins later, so it costs nothing.
(A second, read-only connection would also see only committed rows, but not for an
in-memory store, and would add a thread and a file handle per store for little.)

The database holds every access token and message: it and its ``-wal``/``-shm``
files are kept 0600, and a directory created for it is 0700.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from salon._exceptions import StoreError
from salon.store.db import (
    Database,
    Row,
    ensure_private_dir,
    migrations,
    restrict_files,
    split_sql,
    sqlite_path,
    sqlite_size_bytes,
)
from salon.store.sqlite_jobs import Job, Kind, Result, batch, counted, fetched, rollback, run_jobs

log = structlog.get_logger("salon.store")

_PLACEHOLDER = re.compile(r"\$(\d+)")
# The (database, task) whose write transaction is open in this context, so the task's
# own statements do not wait for the lock it already holds. The task is part of it: a
# task started inside the transaction copies the context but is not in it.
_IN_TX: contextvars.ContextVar[tuple[object, object] | None] = contextvars.ContextVar(
    "salon_store_sqlite_tx", default=None
)


BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another process's lock

# Words of SQLite's errors that a later try may not see again: busy, locked, full, I/O.
_TRANSIENT_WORDS = ("locked", "busy", "disk", "full", "i/o", "unable to open", "readonly")


def _store_error(what: str, e: sqlite3.Error) -> StoreError:
    # sqlite3 raises OperationalError for a missing table or bad SQL too: those never heal.
    text = str(e).lower()
    transient = isinstance(e, sqlite3.OperationalError) and any(w in text for w in _TRANSIENT_WORDS)
    return StoreError(f"{what}: {e}", transient=transient)


@functools.lru_cache(maxsize=1024)
def _sqlite_sql(sql: str) -> str:
    # Cached: the store's statements are a few hundred constant texts, and the regex
    # ran on each of the ~30 statements of every message (bench/scale.py --part cost).
    return _PLACEHOLDER.sub(r"?\1", sql)


class SqliteDatabase(Database):
    """One SQLite connection shared by the process; writes are serialised."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()
        # Set while no transaction() is open: reads of other tasks wait for it.
        self._no_tx = asyncio.Event()
        self._no_tx.set()
        # Jobs for the connection's thread, gathered in one loop pass (see _submit).
        self._queued: list[tuple[Job, asyncio.Future[Any]]] = []

    @classmethod
    async def connect(cls, url: str) -> SqliteDatabase:
        """Open (creating if needed) the store at ``url`` and run pending migrations."""
        path = sqlite_path(url)
        on_disk = str(path) != ":memory:"
        try:
            if on_disk and not path.parent.exists():
                # Only a dir we create: an existing one may be shared (the cwd, /var/lib).
                ensure_private_dir(path.parent)
            if on_disk:
                restrict_files(path)
            pending = aiosqlite.connect(path, isolation_level=None)
            # A process that ends without closing the store (a crash, a failed test) must
            # not hang at exit on the connection's thread; WAL keeps the file whole.
            thread = getattr(pending, "_thread", pending)
            if isinstance(thread, threading.Thread):
                thread.daemon = True
            conn = await pending
            conn.row_factory = sqlite3.Row
            # Before WAL, so a new (empty) store takes it: the retention janitor can then
            # give freed pages back (incremental_vacuum). An existing store keeps its mode.
            await conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            await conn.execute("PRAGMA journal_mode=WAL")
            if on_disk:
                restrict_files(path)  # the WAL files exist now; fix ones an old version made
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open store {path}: {e}") from e
        db = cls(conn, path)
        await db._migrate()
        return db

    async def _migrate(self) -> None:
        row = await self.fetchone("PRAGMA user_version")
        current = int(row[0]) if row else 0
        for number, name, sql in migrations(self.dialect):
            if number <= current:
                continue
            log.info("store.migrate", migration=name, path=str(self.path))
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                await self._run_script(sql)
                await self._conn.execute(f"PRAGMA user_version={number}")
                await self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                await self._conn.execute("ROLLBACK")
                raise StoreError(f"migration {name} failed: {e}") from e

    async def _run_script(self, sql: str) -> None:
        # executescript() would COMMIT first; run statement by statement inside our transaction.
        for statement in split_sql(sql):
            await self._conn.execute(statement)

    def _in_tx(self) -> bool:
        held = _IN_TX.get()
        return held is not None and held[0] is self and held[1] is asyncio.current_task()

    async def close(self) -> None:
        """Close the connection."""
        self._flush()
        await self._conn.close()

    def _submit(self, job: Job) -> Awaitable[Any]:
        """Queue ``job`` for the connection's thread; its result (or error) comes back.

        The jobs submitted during one pass of the event loop go to the thread in one
        trip, in order, their writes under one commit (see :mod:`.sqlite_jobs`): a
        trip and a commit per statement were most of the store's cost per message."""
        future = asyncio.get_running_loop().create_future()
        self._queued.append((job, future))
        if len(self._queued) == 1:
            future.get_loop().call_soon(self._flush)
        return future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        if not queued:
            return
        jobs = [job for job, _ in queued]
        futures = [future for _, future in queued]
        try:
            raw = self._conn._conn
            if not self._conn._running:
                raise ValueError("Connection closed")
        except ValueError as e:  # closed: every caller hears so (none is left waiting)
            for future in futures:
                if not future.done():
                    future.set_exception(e)
            return
        trip = self._trip(raw, jobs)

        def settle(done: asyncio.Future[list[Result]]) -> None:
            if done.cancelled() or done.exception() is not None:
                error = (
                    StoreError("store connection failed") if done.cancelled() else done.exception()
                )
                for future in futures:
                    if not future.done():
                        future.set_exception(error)  # type: ignore[arg-type]
                return
            for future, (ok, value) in zip(futures, done.result(), strict=True):
                if future.done():
                    continue  # its caller gave up (cancelled); the statement ran anyway
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        trip.add_done_callback(settle)

    def _trip(self, raw: sqlite3.Connection, jobs: list[Job]) -> asyncio.Future[list[Result]]:
        """Send ``jobs`` to the connection's thread: straight onto its queue (what
        aiosqlite's ``_execute`` does, without a coroutine and a task per trip)."""
        trip: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._conn._tx.put_nowait((trip, functools.partial(run_jobs, raw, jobs)))
        return trip

    async def size_bytes(self) -> int:
        """The bytes the store takes on disk: the database file and its WAL."""
        return sqlite_size_bytes(self.path)

    async def reclaim(self, max_pages: int) -> int:
        """Give up to ``max_pages`` free pages back to the file system, then checkpoint
        the WAL (so the file shrinks and the WAL empties); returns the pages given back.

        Only a store created with incremental auto-vacuum gives pages back; another one
        keeps them and reuses them for new rows (its file stops growing, never shrinks).
        """

        def run(conn: sqlite3.Connection) -> int:
            before = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            # executescript steps the pragma to its end (execute frees one page only).
            conn.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
            after = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            # Empty the WAL file too, unless a reader (`salon status` reading the file)
            # is in the way: then at the next sweep, never waiting with the store held.
            conn.execute("PRAGMA busy_timeout=0")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            return before - after

        if self._in_tx():
            raise StoreError("reclaim() cannot run inside transaction()")
        async with self._lock:
            try:
                return int(await self._submit(Job(run, "raw")))
            except sqlite3.Error as e:
                raise _store_error("store reclaim failed", e) from e

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the number of rows changed."""
        if not self._in_tx():
            await self._no_other_tx()
        return await self._execute(sql, args)

    async def _no_other_tx(self) -> None:
        """Wait until no other task's transaction is open; the caller's statement is then
        queued on the connection's thread before anything else can begin one.

        One statement (or a batch, one job on that thread) is atomic there, so writes
        need no lock of their own: taking one held each write back until the one before
        it came back, a round trip apiece, on the path of every message."""
        # Checked again on waking: the next transaction may have begun.
        while not self._no_tx.is_set():
            await self._no_tx.wait()

    async def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        try:
            kind: Kind = "raw" if self._in_tx() else "write"
            return int(await self._submit(counted(_sqlite_sql(sql), args, kind)))
        except sqlite3.Error as e:
            raise _store_error("store write failed", e) from e

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run writes atomically in one trip to the database thread; returns each one's
        changed-row count. (Sync positions and inbox batches are written on the path of
        every message: one trip instead of one per statement.)"""
        if not statements:
            return []
        prepared = [(_sqlite_sql(sql), tuple(args)) for sql, args in statements]
        if self._in_tx():
            raise StoreError("batch() cannot run inside transaction()")
        await self._no_other_tx()
        try:
            return list(await self._submit(batch(prepared)))
        except sqlite3.Error as e:
            raise _store_error("store write failed", e) from e

    async def write_returning(self, sql: str, *args: Any) -> Sequence[Row]:
        """Run one writing statement with ``RETURNING``; returns its rows (one trip)."""
        if not self._in_tx():
            await self._no_other_tx()
        return await self._fetch(sql, args, "store write failed", writes=True)

    async def fetchall(self, sql: str, *args: Any) -> Sequence[Row]:
        """All rows of a query: committed ones, or this task's own transaction's."""
        if not self._in_tx():
            # Another task's transaction is open on the shared connection: wait until
            # it ends, never reading its uncommitted rows.
            await self._no_other_tx()
        # Queued on the connection's thread now (no await before), ahead of any
        # transaction that begins later.
        return await self._fetch(sql, args, "store read failed")

    async def _fetch(
        self, sql: str, args: tuple[Any, ...], what: str, *, writes: bool = False
    ) -> Sequence[Row]:
        try:
            # One trip to the database thread (execute + fetch + close would be three):
            # reads sit on the path of every reply.
            kind: Kind = "raw" if self._in_tx() else ("write" if writes else "read")
            return list(await self._submit(fetched(_sqlite_sql(sql), args, kind)))
        except sqlite3.Error as e:
            raise _store_error(what, e) from e

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        """Group writes atomically; other writers, and readers, wait until it ends."""
        async with self._lock:
            token = _IN_TX.set((self, asyncio.current_task()))
            self._no_tx.clear()
            try:
                await self._submit(counted("BEGIN IMMEDIATE", (), "raw"))
                try:
                    yield self
                    await self._submit(counted("COMMIT", (), "raw"))
                except BaseException:
                    # Also when COMMIT failed: never leave the shared connection inside
                    # a transaction (later writes would be swallowed by it).
                    await self._submit(Job(rollback, "raw"))
                    raise
            except sqlite3.Error as e:
                raise _store_error("store transaction failed", e) from e
            finally:
                self._no_tx.set()
                _IN_TX.reset(token)
