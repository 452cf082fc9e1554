"""The steps of turns that called tools: ``tool_calls`` (one row per call)."""

from __future__ import annotations

from salon.store.db import Database
from salon.store.records import now_ms


class TurnToolSteps:
    """One turn's recorded tool calls (what a ``ToolLedger`` of the agents layer needs)."""

    def __init__(self, db: Database, event_id: str, agent_id: str) -> None:
        self._db = db
        self.event_id = event_id
        self.agent_id = agent_id

    async def recorded(self, step: int) -> tuple[str, str, bool, str] | None:
        """``(name, arguments, ok, result)`` of a step run before, if any."""
        row = await self._db.fetchone(
            "SELECT name, arguments, ok, result FROM tool_calls"
            " WHERE event_id = $1 AND agent_id = $2 AND step = $3",
            self.event_id,
            self.agent_id,
            step,
        )
        if row is None:
            return None
        return row["name"], row["arguments"], bool(row["ok"]), row["result"]

    async def record(self, step: int, name: str, arguments: str, ok: bool, text: str) -> None:
        """Keep a step's result; a step recorded again (other arguments) is replaced."""
        await self._db.execute(
            "INSERT INTO tool_calls (event_id, agent_id, step, name, arguments, ok, result,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (event_id, agent_id, step) DO UPDATE SET name = excluded.name,"
            " arguments = excluded.arguments, ok = excluded.ok, result = excluded.result",
            self.event_id,
            self.agent_id,
            step,
            name,
            arguments,
            int(ok),
            text,
            now_ms(),
        )


class ToolCalls:
    """The ``tool_calls`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def for_turn(self, event_id: str, agent_id: str) -> TurnToolSteps:
        """The steps of one turn."""
        return TurnToolSteps(self._db, event_id, agent_id)

    async def of_turn(self, event_id: str, agent_id: str) -> list[dict[str, object]]:
        """Every recorded step of a turn, in order."""
        rows = await self._db.fetchall(
            "SELECT step, name, arguments, ok, result FROM tool_calls"
            " WHERE event_id = $1 AND agent_id = $2 ORDER BY step",
            event_id,
            agent_id,
        )
        keys = ("step", "name", "arguments", "ok", "result")
        return [{key: row[key] for key in keys} for row in rows]
