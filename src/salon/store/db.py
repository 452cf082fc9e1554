"""The store's database handle: one interface, a SQLite and a PostgreSQL implementation.

SQL is written once, in the subset both speak, with PostgreSQL's ``$1`` placeholders
(SQLite takes them as ``?1``, its numbered parameters); what differs is translated by
each backend's small dialect (see :mod:`salon.store.sqlite`, :mod:`salon.store.postgres`).
Migrations are numbered files in ``migrations/``; a file of the same number in
``migrations/postgres/`` replaces one where PostgreSQL must differ.

Reads never see another task's open transaction, on either backend.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, suppress
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from salon._exceptions import StoreError


class Row(Protocol):
    """A result row: by column name or position (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> Any: ...


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL store."""
    return url.startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """``url`` without its password, for logs and errors.

    Not by ``urlsplit``: a password with a raw ``/``, ``#`` or ``?`` in it makes it
    find none. Whatever lies between the scheme and the last ``@`` is credentials;
    a ``password=`` in the query is masked too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    at = rest.rfind("@")
    if at >= 0:
        user = rest[:at].partition(":")[0]
        rest = f"{user}:***@{rest[at + 1 :]}"
    return f"{scheme}://" + re.sub(r"(?i)(password=)[^&]*", r"\1***", rest)


class Database(ABC):
    """A store database: statements with ``$n`` placeholders, a write transaction."""

    dialect: str  # "sqlite" or "postgres"

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> Database:
        """Open (creating if needed) the store at ``url`` and run pending migrations:
        ``sqlite:///path`` or ``postgresql://user@host/db`` (``pool_size`` connections)."""
        if is_postgres_url(url):
            from salon.store.postgres import PostgresDatabase

            return await PostgresDatabase.connect(url, pool_size=pool_size)
        from salon.store.sqlite import SqliteDatabase

        return await SqliteDatabase.connect(url)

    @abstractmethod
    async def close(self) -> None:
        """Close the connection(s)."""

    @abstractmethod
    async def size_bytes(self) -> int:
        """The bytes the store takes on disk."""

    @abstractmethod
    async def reclaim(self, max_pages: int) -> int:
        """Give space freed by deletes back, a bounded step; returns pages given back."""

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the number of rows changed."""

    @abstractmethod
    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run writes atomically in one trip; returns each one's changed-row count."""

    @abstractmethod
    async def write_returning(self, sql: str, *args: Any) -> Sequence[Row]:
        """Run one writing statement with ``RETURNING``; returns its rows."""

    @abstractmethod
    async def fetchall(self, sql: str, *args: Any) -> Sequence[Row]:
        """All rows of a query (committed data, or this task's own transaction's)."""

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetchone(sql, *args)
        return None if row is None else row[0]

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Database]:
        """Group statements atomically. Inside it, this task's statements (through the
        database or the handle it yields) run in the transaction; other tasks see none
        of its writes until it commits, and none ever if it rolls back."""


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(number, name, SQL) of every migration, oldest first, for ``dialect``: a file of
    ``migrations/<dialect>/`` replaces the common one of the same number."""
    found: dict[int, tuple[str, str]] = {}
    root = resources.files("salon.store.migrations")
    for folder in (root, root / dialect):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            name = entry.name
            if name.endswith(".sql") and name[:4].isdigit():
                found[int(name[:4])] = (name, entry.read_text(encoding="utf-8"))
    return [(number, *found[number]) for number in sorted(found)]


def split_sql(script: str) -> list[str]:
    """Split a migration into statements (no semicolons or ``--`` inside our literals)."""
    without_comments = re.sub(r"--[^\n]*", "", script)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


# --- SQLite files: helpers the CLI uses too -----------------------------------------

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_path(url: str) -> Path:
    """The file path of a ``sqlite:///path`` store URL."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise StoreError(
            f"unsupported store url {redact_url(url)!r}: expected sqlite:///path or postgresql://"
        )
    return Path(url[len(prefix) :])


def sqlite_size_bytes(path: Path) -> int:
    """The size of a SQLite store on disk: the file plus its WAL (0 in memory)."""
    total = 0
    for file in (path, path.with_name(path.name + "-wal")):
        with suppress(OSError):
            total += file.stat().st_size
    return total


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` if needed and make it owner-only (0700), even if it existed."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is masked by umask; an old dir kept its own


def restrict_files(path: Path) -> None:
    """Make the database (created empty if missing) and its side files owner-only."""
    # Create it ourselves so it is never briefly world-readable; SQLite then gives
    # the WAL and shared-memory files the database file's mode.
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))
    for file in (path, *(path.with_name(path.name + s) for s in _SIDE_FILES)):
        with suppress(FileNotFoundError):
            file.chmod(PRIVATE_FILE_MODE)


__all__ = [
    "Database",
    "Row",
    "ensure_private_dir",
    "migrations",
    "sqlite_path",
    "sqlite_size_bytes",
]
