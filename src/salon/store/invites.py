"""Invitations of Salon's identities, joined by a retrying task outside the sync loop."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from salon.store.db import Database, Row
from salon.store.records import now_ms


class InviteState(StrEnum):
    PENDING = "pending"
    JOINED = "joined"
    REFUSED = "refused"  # the sender may not bring agents into rooms
    FAILED = "failed"  # the homeserver said no for good (403, 404…)


@dataclass(frozen=True)
class InviteRecord:
    user_id: str
    room_id: str
    sender: str
    state: InviteState
    attempts: int
    next_try_at: int
    reason: str | None


def _record(row: Row) -> InviteRecord:
    return InviteRecord(
        user_id=row["user_id"],
        room_id=row["room_id"],
        sender=row["sender"],
        state=InviteState(row["state"]),
        attempts=row["attempts"],
        next_try_at=row["next_try_at"],
        reason=row["reason"],
    )


class Invites:
    """The ``invites`` table: one row per (identity, room)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, user_id: str, room_id: str, sender: str) -> None:
        """Remember an invitation as pending. Seen again while pending it changes nothing;
        after an outcome it is a new invitation (left and invited back) and is tried afresh."""
        now = now_ms()
        await self._db.execute(
            "INSERT INTO invites (user_id, room_id, sender, state, attempts, next_try_at,"
            " created_at, updated_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4)"
            " ON CONFLICT (user_id, room_id) DO UPDATE"
            " SET sender = excluded.sender, state = 'pending', attempts = 0,"
            " next_try_at = excluded.next_try_at, reason = NULL, updated_at = excluded.updated_at"
            " WHERE invites.state <> 'pending'",
            user_id,
            room_id,
            sender,
            now,
        )

    async def get(self, user_id: str, room_id: str) -> InviteRecord | None:
        """One invitation."""
        row = await self._db.fetchone(
            "SELECT * FROM invites WHERE user_id = $1 AND room_id = $2", user_id, room_id
        )
        return None if row is None else _record(row)

    async def due(self, now: int, limit: int = 100) -> list[InviteRecord]:
        """Pending invitations whose next try has come, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM invites WHERE state = 'pending' AND next_try_at <= $1"
            " ORDER BY next_try_at LIMIT $2",
            now,
            limit,
        )
        return [_record(r) for r in rows]

    async def next_due(self) -> int | None:
        """When the earliest pending invitation is next to be tried (ms), if any."""
        value = await self._db.fetchval(
            "SELECT MIN(next_try_at) FROM invites WHERE state = 'pending'"
        )
        return None if value is None else int(value)

    async def close(self, user_id: str, room_id: str, state: InviteState, reason: str) -> None:
        """Store an outcome (joined, refused, failed) and why."""
        await self._db.execute(
            "UPDATE invites SET state = $3, reason = $4,"
            " attempts = attempts + CASE WHEN $3 = 'refused' THEN 0 ELSE 1 END,"
            " updated_at = $5 WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
            state.value,
            reason,
            now_ms(),
        )

    async def retry_at(self, user_id: str, room_id: str, when: int, reason: str) -> None:
        """Count a failed attempt and schedule the next."""
        await self._db.execute(
            "UPDATE invites SET attempts = attempts + 1, next_try_at = $3, reason = $4,"
            " updated_at = $5 WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
            when,
            reason,
            now_ms(),
        )
