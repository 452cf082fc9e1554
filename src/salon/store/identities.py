"""Credentials and sync position of each Matrix identity Salon acts as.

The position is the /sync token plus, per room, a mark (the newest event
delivered) and the identity's own join time: a ``limited`` timeline is
backfilled down to the mark, and events older than the join are never delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from salon.store.db import Database, Row
from salon.store.records import IdentityRecord, now_ms


class SyncMark(NamedTuple):
    """The newest event of a room already handed to the gateway."""

    event_id: str
    origin_ts: int


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

    async def room_marks(self, user_id: str) -> dict[str, SyncMark]:
        """Room id → mark, for every room this identity has received events in."""
        rows = await self._db.fetchall(
            "SELECT room_id, event_id, origin_ts FROM sync_marks WHERE user_id = $1", user_id
        )
        return {r["room_id"]: SyncMark(r["event_id"], r["origin_ts"]) for r in rows}

    async def room_joins(self, user_id: str) -> dict[str, int]:
        """Room id → when this identity last joined it (ms)."""
        rows = await self._db.fetchall(
            "SELECT room_id, joined_at FROM memberships WHERE user_id = $1", user_id
        )
        return {r["room_id"]: r["joined_at"] for r in rows}

    async def joined_at(self, user_id: str, room_id: str) -> int | None:
        """When this identity last joined ``room_id``, if known."""
        value = await self._db.fetchval(
            "SELECT joined_at FROM memberships WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
        )
        return None if value is None else int(value)

    async def advance(
        self,
        user_id: str,
        token: str | None,
        marks: Mapping[str, tuple[str, int]],
        joins: Mapping[str, int],
    ) -> None:
        """Record a batch's position in one transaction: its rooms' marks and joins and
        the sync token after it. Marks and joins never move back in time (a replayed
        older batch must not undo a newer one)."""
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO sync_marks (user_id, room_id, event_id, origin_ts)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, room_id) DO UPDATE"
                " SET event_id = excluded.event_id, origin_ts = excluded.origin_ts"
                " WHERE excluded.origin_ts >= sync_marks.origin_ts",
                (user_id, room_id, event_id, origin_ts),
            )
            for room_id, (event_id, origin_ts) in marks.items()
        ]
        statements += [
            (
                "INSERT INTO memberships (user_id, room_id, joined_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (user_id, room_id) DO UPDATE SET joined_at = excluded.joined_at"
                " WHERE excluded.joined_at > memberships.joined_at",
                (user_id, room_id, joined_at),
            )
            for room_id, joined_at in joins.items()
        ]
        if token is not None:
            statements.append(
                ("UPDATE identities SET sync_token = $2 WHERE user_id = $1", (user_id, token))
            )
        await self._db.batch(statements)

    async def created_at(self, user_id: str) -> int:
        """When Salon first acted as this user (ms); earlier events are history."""
        return (await self.ensure(user_id)).created_at
