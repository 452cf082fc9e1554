"""The inbox: every admitted event once, keyed by event id."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

from salon.store.db import Database, Row
from salon.store.records import InboxItem, InboxRow, InboxState, now_ms


def _row(row: Row) -> InboxRow:
    item = InboxItem(
        event_id=row["event_id"],
        room_id=row["room_id"],
        sender=row["sender"],
        event_type=row["event_type"],
        event_json=row["event_json"],
        origin_ts=row["origin_ts"],
        received_by=row["received_by"],
    )
    return InboxRow(
        item=item,
        state=InboxState(row["state"]),
        received_at=row["received_at"],
        attempts=row["attempts"],
        reason=row["reason"],
    )


class Inbox:
    """The ``inbox`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def admit(self, items: Sequence[InboxItem]) -> int:
        """Insert a batch atomically; events seen before are ignored. Returns how many were new."""
        if not items:
            return 0
        received = now_ms()
        counts = await self._db.batch(
            [
                (
                    "INSERT INTO inbox (event_id, room_id, sender, event_type, event_json,"
                    " origin_ts, received_by, received_at, state)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'new')"
                    " ON CONFLICT (event_id) DO NOTHING",
                    (
                        item.event_id,
                        item.room_id,
                        item.sender,
                        item.event_type,
                        item.event_json,
                        item.origin_ts,
                        item.received_by,
                        received,
                    ),
                )
                for item in items
            ]
        )
        return sum(counts)

    async def pending(self, limit: int = 100, *, now: int | None = None) -> list[InboxRow]:
        """Events admitted but not yet handled and due now, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM inbox WHERE state = 'new' AND next_at <= $2"
            " ORDER BY received_at, origin_ts LIMIT $1",
            limit,
            now_ms() if now is None else now,
        )
        return [_row(r) for r in rows]

    async def claim(
        self,
        owner: str,
        lease_ms: int,
        *,
        rooms: int = 100,
        per_room: int = 16,
        skip: Collection[str] = (),
    ) -> list[InboxRow]:
        """Claim due work for ``owner`` until now + ``lease_ms``: of up to ``rooms`` rooms
        whose head (oldest pending event) nobody else holds, the first ``per_room``
        events, in order. Returns them, this owner's earlier claims included, but those
        in ``skip`` (the events it has in hand: neither rewritten nor read again, where
        each read returned every one of them, several times per message under load).

        A room is held through its head row: on PostgreSQL the head is locked ``FOR
        UPDATE SKIP LOCKED`` (a concurrent claimer skips the room, and one that waited
        re-reads the head's new owner); on SQLite the single writer serialises claims.
        A room whose head waits for a retry is nobody's until it is due."""
        now = now_ms()
        postgres = self._db.dialect == "postgres"
        lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
        skipped = ""  # the ids as one JSON parameter: one statement text whatever their number
        if skip:
            listed = "jsonb_array_elements_text(CAST($6 AS jsonb))" if postgres else "value"
            source = "" if postgres else " FROM json_each($6)"
            skipped = f" AND event_id NOT IN (SELECT {listed}{source})"
        rows = await self._db.write_returning(
            "UPDATE inbox SET owner = $1, lease_until = $2 WHERE event_id IN ("
            " SELECT w.event_id FROM (SELECT event_id, room_id, received_at, origin_ts,"
            "  ROW_NUMBER() OVER (PARTITION BY room_id"
            "   ORDER BY received_at, origin_ts, event_id) AS nth"
            "  FROM inbox WHERE state = 'new') AS w"
            " WHERE w.nth <= $5 AND w.room_id IN ("
            "  SELECT h.room_id FROM inbox h WHERE h.state = 'new' AND h.next_at <= $3"
            "  AND (h.owner IS NULL OR h.owner = $1 OR h.lease_until < $3)"
            "  AND NOT EXISTS (SELECT 1 FROM inbox e WHERE e.room_id = h.room_id"
            "   AND e.state = 'new' AND (e.received_at < h.received_at"
            "    OR (e.received_at = h.received_at AND (e.origin_ts < h.origin_ts"
            "     OR (e.origin_ts = h.origin_ts AND e.event_id < h.event_id)))))"
            f"  ORDER BY h.received_at, h.origin_ts, h.event_id LIMIT $4{lock})){skipped}"
            " RETURNING *",
            owner,
            now + lease_ms,
            now,
            rooms,
            per_room,
            *((json.dumps(list(skip)),) if skip else ()),
        )
        return sorted(
            (_row(r) for r in rows),
            key=lambda r: (r.received_at, r.item.origin_ts, r.item.event_id),
        )

    async def extend(self, owner: str, until: int) -> int:
        """Extend ``owner``'s claims on pending events to ``until`` (its heartbeat)."""
        return await self._db.execute(
            "UPDATE inbox SET lease_until = $2 WHERE owner = $1 AND state = 'new'", owner, until
        )

    async def release(self, owner: str) -> int:
        """Give up ``owner``'s claims on pending events (a clean stop): others take them."""
        return await self._db.execute(
            "UPDATE inbox SET owner = NULL, lease_until = 0 WHERE owner = $1 AND state = 'new'",
            owner,
        )

    async def next_due(self, *, after: int | None = None) -> int | None:
        """When the earliest deferred event is due again (ms), or None; ``after``: only
        events due later than that (those due already are being handled)."""
        if after is None:
            value = await self._db.fetchval("SELECT MIN(next_at) FROM inbox WHERE state = 'new'")
        else:
            value = await self._db.fetchval(
                "SELECT MIN(next_at) FROM inbox WHERE state = 'new' AND next_at > $1", after
            )
        return None if value is None else int(value)

    async def defer(
        self, event_id: str, *, next_at: int, error: str, owner: str | None = None
    ) -> bool:
        """Leave an entry pending after a transient failure, to be tried at ``next_at``.
        With ``owner``: only while it holds the entry (False: another process claimed it
        since, and nothing was written)."""
        return bool(
            await self._db.execute(
                "UPDATE inbox SET attempts = attempts + 1, next_at = $2, last_error = $3"
                " WHERE event_id = $1 AND state = 'new'"
                " AND (CAST($4 AS TEXT) IS NULL OR owner = $4)",
                event_id,
                next_at,
                error,
                owner,
            )
        )

    async def hold(self, event_id: str, owner: str, until: int) -> bool:
        """Confirm ``owner`` still holds a pending entry (extending it to ``until``), just
        before handling it: False if it is handled, or another process claimed it after
        this one's lease ran out (a pause, a slow store)."""
        return bool(
            await self._db.execute(
                "UPDATE inbox SET lease_until = $3"
                " WHERE event_id = $1 AND state = 'new' AND owner = $2",
                event_id,
                owner,
                until,
            )
        )

    async def count(self, state: InboxState) -> int:
        """How many entries are in ``state`` (the inbox depth, for status and metrics)."""
        return int(
            await self._db.fetchval("SELECT COUNT(*) FROM inbox WHERE state = $1", state.value)
        )

    async def get(self, event_id: str) -> InboxRow | None:
        """One inbox entry."""
        row = await self._db.fetchone("SELECT * FROM inbox WHERE event_id = $1", event_id)
        return None if row is None else _row(row)

    async def mark(
        self,
        event_id: str,
        state: InboxState,
        reason: str | None = None,
        *,
        owner: str | None = None,
    ) -> bool:
        """Close an entry as handled or dropped (with why); with ``owner``: only while it
        holds the entry (False: another process claimed it since, nothing was written).

        A dropped event's content is cleared at once: it was never acted on, and it may
        come from someone who does not use the agents (an unauthorised sender, a room
        we only share). Its id, sender, room, type and reason stay for the audit."""
        return bool(
            await self._db.execute(
                "UPDATE inbox SET state = $2, reason = $3,"
                " event_json = CASE WHEN $2 = 'dropped' THEN '' ELSE event_json END"
                " WHERE event_id = $1 AND (CAST($4 AS TEXT) IS NULL OR owner = $4)",
                event_id,
                state.value,
                reason,
                owner,
            )
        )
