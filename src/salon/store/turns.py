"""The turn ledger: one row per (event, agent), admitted → running → replied | failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from salon.store.db import Database, Row
from salon.store.records import TurnRecord, TurnState, now_ms


def _record(row: Row) -> TurnRecord:
    return TurnRecord(
        event_id=row["event_id"],
        agent_id=row["agent_id"],
        room_id=row["room_id"],
        state=TurnState(row["state"]),
        attempts=row["attempts"],
        reply_event_id=row["reply_event_id"],
        error=row["error"],
        updated_at=row["updated_at"],
        kind=row["kind"],
        spec=row["spec"],
        output=row["output"],
        owner=row["owner"],
        created_at=row["created_at"] or 0,
    )


class Turns:
    """The ``turns`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, event_id: str, agent_id: str) -> TurnRecord | None:
        """The ledger row of one turn."""
        row = await self._db.fetchone(
            "SELECT * FROM turns WHERE event_id = $1 AND agent_id = $2", event_id, agent_id
        )
        return None if row is None else _record(row)

    async def admit(
        self,
        event_id: str,
        agent_id: str,
        room_id: str,
        *,
        kind: str = "message",
        spec: str | None = None,
        owner: str | None = None,
        lease_until: int = 0,
        along: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> bool:
        """Record that ``agent_id`` owes a turn for ``event_id`` (idempotent), held by
        ``owner`` until ``lease_until`` (ms; see :meth:`claim`). ``along``: writes made
        before it, all or none with it (a message's routing decision).

        Returns True if the row is new."""
        now = now_ms()
        admit = (
            "INSERT INTO turns (event_id, agent_id, room_id, state, attempts, updated_at,"
            " kind, spec, created_at, owner, lease_until)"
            " VALUES ($1, $2, $3, 'admitted', 0, $4, $5, $6, $4, $7, $8)"
            " ON CONFLICT (event_id, agent_id) DO NOTHING",
            (event_id, agent_id, room_id, now, kind, spec, owner, lease_until),
        )
        if not along:
            return bool(await self._db.execute(admit[0], *admit[1]))
        if self._db.dialect == "sqlite":
            # One trip to the connection's thread instead of one per write.
            return bool((await self._db.batch([*along, admit]))[-1])
        # PostgreSQL: a transaction costs two round trips more than the writes it groups,
        # and none is needed (each write is idempotent; see MessageHandler).
        for sql, args in along:
            await self._db.execute(sql, *args)
        return bool(await self._db.execute(admit[0], *admit[1]))

    async def claim(
        self, event_id: str, agent_id: str, owner: str, lease_until: int
    ) -> TurnRecord | None:
        """Take an open turn for ``owner`` if nobody else holds it (no owner, ``owner``
        itself, or a lease run out: a dead process's); None if it is closed or held."""
        now = now_ms()
        rows = await self._db.write_returning(
            "UPDATE turns SET owner = $3, lease_until = $4"
            " WHERE event_id = $1 AND agent_id = $2 AND state IN ('admitted', 'running')"
            " AND (owner IS NULL OR owner = $3 OR lease_until < $5) RETURNING *",
            event_id,
            agent_id,
            owner,
            lease_until,
            now,
        )
        return _record(rows[0]) if rows else None

    async def extend(self, owner: str, until: int) -> int:
        """Extend ``owner``'s open turns' leases to ``until`` (its heartbeat)."""
        return await self._db.execute(
            "UPDATE turns SET lease_until = $2"
            " WHERE owner = $1 AND state IN ('admitted', 'running')",
            owner,
            until,
        )

    async def release_all(self, owner: str) -> int:
        """Give up ``owner``'s open turns (a clean stop): another process resumes them."""
        return await self._db.execute(
            "UPDATE turns SET owner = NULL, lease_until = 0"
            " WHERE owner = $1 AND state IN ('admitted', 'running')",
            owner,
        )

    async def start(
        self, event_id: str, agent_id: str, owner: str | None = None, lease_until: int = 0
    ) -> TurnRecord | None:
        """Move an open turn to running for ``owner`` and count the attempt; None if it
        is already closed, or held by another live owner (it runs there)."""
        now = now_ms()
        rows = await self._db.write_returning(
            "UPDATE turns SET state = 'running', attempts = attempts + 1, updated_at = $3,"
            " owner = $4, lease_until = $5"
            " WHERE event_id = $1 AND agent_id = $2 AND state IN ('admitted', 'running')"
            " AND (owner IS NULL OR owner = $4 OR lease_until < $3) RETURNING *",
            event_id,
            agent_id,
            now,
            owner,
            lease_until,
        )
        return _record(rows[0]) if rows else None

    async def finish(
        self,
        event_id: str,
        agent_id: str,
        state: TurnState,
        *,
        reply_event_id: str | None = None,
        error: str | None = None,
        owner: str | None = None,
    ) -> bool:
        """Close a turn as replied, failed or stopped; with ``owner``: only while it holds
        the turn (False: another process claimed it since, nothing was written)."""
        return bool(
            await self._db.execute(
                "UPDATE turns SET state = $3, reply_event_id = COALESCE($4, reply_event_id),"
                " error = $5, updated_at = $6"
                " WHERE event_id = $1 AND agent_id = $2"
                " AND (CAST($7 AS TEXT) IS NULL OR owner = $7)",
                event_id,
                agent_id,
                state.value,
                reply_event_id,
                error,
                now_ms(),
                owner,
            )
        )

    async def set_output(self, event_id: str, agent_id: str, output: str) -> None:
        """Keep the finished outcome before it is sent (a re-run sends it, not a new one)."""
        await self._db.execute(
            "UPDATE turns SET output = $3 WHERE event_id = $1 AND agent_id = $2",
            event_id,
            agent_id,
            output,
        )

    async def release(self, event_id: str, agent_id: str) -> None:
        """Give back the attempt of a turn a clean shutdown interrupted (not its fault)."""
        await self._db.execute(
            "UPDATE turns SET state = 'admitted',"
            " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
            " WHERE event_id = $1 AND agent_id = $2 AND state = 'running'",
            event_id,
            agent_id,
        )

    async def set_reply(self, event_id: str, agent_id: str, reply_event_id: str) -> None:
        """Remember the reply's first event while it is still streaming."""
        await self._db.execute(
            "UPDATE turns SET reply_event_id = $3 WHERE event_id = $1 AND agent_id = $2",
            event_id,
            agent_id,
            reply_event_id,
        )

    async def by_reply(self, reply_event_id: str) -> TurnRecord | None:
        """The turn whose reply is ``reply_event_id``."""
        row = await self._db.fetchone(
            "SELECT * FROM turns WHERE reply_event_id = $1", reply_event_id
        )
        return None if row is None else _record(row)

    async def last_activity(self, agent_id: str, room_id: str) -> int | None:
        """When (ms) the agent last had a turn in the room or delegated to it, if ever."""
        value = await self._db.fetchval(
            "SELECT MAX(t) FROM ("
            " SELECT MAX(updated_at) AS t FROM turns WHERE agent_id = $1 AND room_id = $2"
            " UNION ALL SELECT MAX(updated_at) FROM delegations"
            " WHERE direction = 'out' AND from_agent = $1 AND target_room = $2) AS a",
            agent_id,
            room_id,
        )
        return None if value is None else int(value)

    async def recent(self, since_ms: int, limit: int = 500) -> list[TurnRecord]:
        """Turns admitted or changed since ``since_ms``, and every open one, newest
        first (the dashboard's list and charts)."""
        rows = await self._db.fetchall(
            "SELECT * FROM turns WHERE created_at >= $1 OR updated_at >= $1"
            " OR state IN ('admitted', 'running') ORDER BY created_at DESC LIMIT $2",
            since_ms,
            limit,
        )
        return [_record(r) for r in rows]

    async def unfinished(self, owner: str | None = None) -> list[TurnRecord]:
        """Turns admitted or running: after a crash these are resumed. With ``owner``:
        only those it may claim (its own, nobody's, or a lease run out)."""
        rows = await self._db.fetchall(
            "SELECT * FROM turns WHERE state IN ('admitted', 'running')"
            " AND (CAST($1 AS TEXT) IS NULL OR owner IS NULL OR owner = $1 OR lease_until < $2)"
            " ORDER BY updated_at",
            owner,
            now_ms(),
        )
        return [_record(r) for r in rows]
