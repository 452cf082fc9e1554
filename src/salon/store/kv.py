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
        async with self._db.transaction() as tx:
            current = await tx.fetchval("SELECT value FROM kv WHERE key = $1", key)
            value = int(current or 0) + 1
            await tx.execute(
                "INSERT INTO kv (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                key,
                str(value),
            )
        return value
