"""Credentials and sync position of each Matrix identity Salon acts as."""

from __future__ import annotations

from salon.store.db import Database, Row
from salon.store.records import IdentityRecord, now_ms


def _record(row: Row) -> IdentityRecord:
    return IdentityRecord(
        user_id=row["user_id"],
        device_id=row["device_id"],
        access_token=row["access_token"],
        sync_token=row["sync_token"],
        created_at=row["created_at"],
    )


class Identities:
    """The ``identities`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: str) -> IdentityRecord | None:
        """The identity row, if Salon has seen this user before."""
        row = await self._db.fetchone("SELECT * FROM identities WHERE user_id = $1", user_id)
        return None if row is None else _record(row)

    async def ensure(self, user_id: str) -> IdentityRecord:
        """The identity row, created (with ``created_at`` = now) on first sight."""
        await self._db.execute(
            "INSERT INTO identities (user_id, created_at) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO NOTHING",
            user_id,
            now_ms(),
        )
        record = await self.get(user_id)
        assert record is not None
        return record

    async def load_credentials(self, user_id: str) -> tuple[str | None, str | None]:
        """(device id, access token) last saved for the user."""
        record = await self.get(user_id)
        return (None, None) if record is None else (record.device_id, record.access_token)

    async def save_credentials(self, user_id: str, device_id: str, access_token: str) -> None:
        """Remember a working access token."""
        await self.ensure(user_id)
        await self._db.execute(
            "UPDATE identities SET device_id = $2, access_token = $3 WHERE user_id = $1",
            user_id,
            device_id,
            access_token,
        )

    async def get_sync_token(self, user_id: str) -> str | None:
        """Where this identity's /sync stream stopped."""
        value = await self._db.fetchval(
            "SELECT sync_token FROM identities WHERE user_id = $1", user_id
        )
        return str(value) if value is not None else None

    async def set_sync_token(self, user_id: str, token: str) -> None:
        """Record a sync position; call only after the batch before it is admitted."""
        await self._db.execute(
            "UPDATE identities SET sync_token = $2 WHERE user_id = $1", user_id, token
        )

    async def created_at(self, user_id: str) -> int:
        """When Salon first acted as this user (ms); earlier events are history."""
        return (await self.ensure(user_id)).created_at
