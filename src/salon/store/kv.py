"""Small durable values and counters."""

from __future__ import annotations

from salon.store.db import Database

# A running gateway's loops, refreshed every few seconds, for `salon status`.
GATEWAY_STATUS_KEY = "gateway:status"


class KV:
    """The ``kv`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        """A stored value."""
        value = await self._db.fetchval("SELECT value FROM kv WHERE key = $1", key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str) -> None:
        """Store a value."""
        await self._db.execute(
            "INSERT INTO kv (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    async def next(self, key: str) -> int:
        """Increment a durable counter and return the new value (never repeats)."""
        return await increment(self._db, key)


# One statement, so two writers never both read the old value (PostgreSQL runs
# transactions side by side; SQLite's are serialised anyway).
_INCREMENT = (
    "INSERT INTO kv (key, value) VALUES ($1, '1') ON CONFLICT (key)"
    " DO UPDATE SET value = CAST(CAST(kv.value AS BIGINT) + 1 AS TEXT) RETURNING value"
)


async def increment(db: Database, key: str) -> int:
    """Increment the counter ``key`` (in ``db``, which may be a transaction)."""
    rows = await db.write_returning(_INCREMENT, key)
    return int(rows[0][0])
