"""A thin async database handle with numbered SQL migrations.

SQL is written with PostgreSQL-style ``$1`` placeholders; for SQLite they are
rewritten to ``?1`` (SQLite's numbered parameters), so the same statements can
serve a PostgreSQL backend later without an ORM in between.

The database holds every access token and message: it and its ``-wal``/``-shm``
files are kept 0600, and a directory created for it is 0700.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from salon._exceptions import StoreError

log = structlog.get_logger("salon.store")

_PLACEHOLDER = re.compile(r"\$(\d+)")
Row = sqlite3.Row
# True inside the task that holds the write transaction, so its own statements
# do not wait for the lock it already holds.
_IN_TX: contextvars.ContextVar[bool] = contextvars.ContextVar("salon_store_in_tx", default=False)


BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another process's lock

# Words of SQLite's errors that a later try may not see again: busy, locked, full, I/O.
_TRANSIENT_WORDS = ("locked", "busy", "disk", "full", "i/o", "unable to open", "readonly")


def _store_error(what: str, e: sqlite3.Error) -> StoreError:
    # sqlite3 raises OperationalError for a missing table or bad SQL too: those never heal.
    text = str(e).lower()
    transient = isinstance(e, sqlite3.OperationalError) and any(w in text for w in _TRANSIENT_WORDS)
    return StoreError(f"{what}: {e}", transient=transient)


def _sqlite_sql(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


def sqlite_path(url: str) -> Path:
    """The file path of a ``sqlite:///path`` store URL."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise StoreError(f"unsupported store url {url!r}: expected sqlite:///path")
    return Path(url[len(prefix) :])


def sqlite_size_bytes(path: Path) -> int:
    """The size of a SQLite store on disk: the file plus its WAL (0 in memory)."""
    total = 0
    for file in (path, path.with_name(path.name + "-wal")):
        with suppress(OSError):
            total += file.stat().st_size
    return total


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_SIDE_FILES = ("-wal", "-shm", "-journal")


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` if needed and make it owner-only (0700), even if it existed."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is masked by umask; an old dir kept its own


def _restrict_files(path: Path) -> None:
    """Make the database (created empty if missing) and its side files owner-only."""
    # Create it ourselves so it is never briefly world-readable; SQLite then gives
    # the WAL and shared-memory files the database file's mode.
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))
    for file in (path, *(path.with_name(path.name + s) for s in _SIDE_FILES)):
        with suppress(FileNotFoundError):
            file.chmod(PRIVATE_FILE_MODE)


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("salon.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    """One SQLite connection shared by the process; writes are serialised."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> Database:
        """Open (creating if needed) the store at ``url`` and run pending migrations."""
        path = sqlite_path(url)
        on_disk = str(path) != ":memory:"
        try:
            if on_disk and not path.parent.exists():
                # Only a dir we create: an existing one may be shared (the cwd, /var/lib).
                ensure_private_dir(path.parent)
            if on_disk:
                _restrict_files(path)
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
                _restrict_files(path)  # the WAL files exist now; fix ones an old version made
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
        for number, name, sql in _migrations():
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
        for statement in _split_sql(sql):
            await self._conn.execute(statement)

    async def close(self) -> None:
        """Close the connection."""
        await self._conn.close()

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

        if _IN_TX.get():
            raise StoreError("reclaim() cannot run inside transaction()")
        async with self._lock:
            try:
                return await self._conn._execute(run, self._conn._conn)
            except sqlite3.Error as e:
                raise _store_error("store reclaim failed", e) from e

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the number of rows changed."""
        if _IN_TX.get():
            return await self._execute(sql, args)
        async with self._lock:
            return await self._execute(sql, args)

    async def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        try:
            cur = await self._conn.execute(_sqlite_sql(sql), args)
        except sqlite3.Error as e:
            raise _store_error("store write failed", e) from e
        return cur.rowcount

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run writes atomically in one trip to the database thread; returns each one's
        changed-row count. (Sync positions and inbox batches are written on the path of
        every message: one trip instead of one per statement.)"""
        if not statements:
            return []
        prepared = [(_sqlite_sql(sql), tuple(args)) for sql, args in statements]

        def run(conn: sqlite3.Connection) -> list[int]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                counts = [conn.execute(sql, args).rowcount for sql, args in prepared]
                conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself failed: a transaction left open would swallow
                # every later write of this shared connection.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return counts

        if _IN_TX.get():
            raise StoreError("batch() cannot run inside transaction()")
        async with self._lock:
            try:
                # aiosqlite runs ``run`` on its own thread with the raw connection.
                return await self._conn._execute(run, self._conn._conn)
            except sqlite3.Error as e:
                raise _store_error("store write failed", e) from e

    async def write_returning(self, sql: str, *args: Any) -> Sequence[Row]:
        """Run one writing statement with ``RETURNING``; returns its rows (one trip)."""

        async def run() -> Sequence[Row]:
            try:
                return list(await self._conn.execute_fetchall(_sqlite_sql(sql), args))
            except sqlite3.Error as e:
                raise _store_error("store write failed", e) from e

        if _IN_TX.get():
            return await run()
        async with self._lock:
            return await run()

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, *args: Any) -> Sequence[Row]:
        """All rows of a query."""
        try:
            # One trip to the database thread (execute + fetch + close would be three):
            # reads sit on the path of every reply.
            return list(await self._conn.execute_fetchall(_sqlite_sql(sql), args))
        except sqlite3.Error as e:
            raise _store_error("store read failed", e) from e

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetchone(sql, *args)
        return None if row is None else row[0]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        """Group writes atomically; other writers wait until it ends."""
        async with self._lock:
            token = _IN_TX.set(True)
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                    await self._conn.execute("COMMIT")
                except BaseException:
                    # Also when COMMIT failed: never leave the shared connection inside
                    # a transaction (later writes would be swallowed by it).
                    if self._conn.in_transaction:
                        await self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise _store_error("store transaction failed", e) from e
            finally:
                _IN_TX.reset(token)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (no semicolons or ``--`` inside our literals)."""
    without_comments = re.sub(r"--[^\n]*", "", script)
    return [s.strip() for s in without_comments.split(";") if s.strip()]
