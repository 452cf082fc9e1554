"""The turn ledger: one row per (event, agent), admitted → running → replied | failed."""

from __future__ import annotations

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
    ) -> bool:
        """Record that ``agent_id`` owes a turn for ``event_id`` (idempotent).

        Returns True if the row is new."""
        now = now_ms()
        return bool(
            await self._db.execute(
                "INSERT INTO turns (event_id, agent_id, room_id, state, attempts, updated_at,"
                " kind, spec, created_at)"
                " VALUES ($1, $2, $3, 'admitted', 0, $4, $5, $6, $4)"
                " ON CONFLICT (event_id, agent_id) DO NOTHING",
                event_id,
                agent_id,
                room_id,
                now,
                kind,
                spec,
            )
        )

    async def start(self, event_id: str, agent_id: str) -> TurnRecord | None:
        """Move an open turn to running and count the attempt; None if it is already closed."""
        rows = await self._db.write_returning(
            "UPDATE turns SET state = 'running', attempts = attempts + 1, updated_at = $3"
            " WHERE event_id = $1 AND agent_id = $2 AND state IN ('admitted', 'running')"
            " RETURNING *",
            event_id,
            agent_id,
            now_ms(),
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
    ) -> None:
        """Close a turn as replied, failed or stopped."""
        await self._db.execute(
            "UPDATE turns SET state = $3, reply_event_id = COALESCE($4, reply_event_id),"
            " error = $5, updated_at = $6"
            " WHERE event_id = $1 AND agent_id = $2",
            event_id,
            agent_id,
            state.value,
            reply_event_id,
            error,
            now_ms(),
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

    async def unfinished(self) -> list[TurnRecord]:
        """Turns admitted or running: after a crash these are resumed."""
        rows = await self._db.fetchall(
            "SELECT * FROM turns WHERE state IN ('admitted', 'running') ORDER BY updated_at"
        )
        return [_record(r) for r in rows]
