"""Session agents: temporary agents, each a copy of an existing agent's config."""

from __future__ import annotations

from dataclasses import dataclass

from salon.store.db import Database, Row
from salon.store.records import now_ms


@dataclass(frozen=True)
class SessionAgent:
    """One temporary agent."""

    agent_id: str
    template: str
    label: str | None
    created_at: int
    expires_at: int
    idle_s: int | None
    ended_at: int | None = None
    ended_reason: str | None = None


def _row(row: Row) -> SessionAgent:
    return SessionAgent(
        agent_id=row["agent_id"],
        template=row["template"],
        label=row["label"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        idle_s=row["idle_s"],
        ended_at=row["ended_at"],
        ended_reason=row["ended_reason"],
    )


class SessionAgents:
    """The ``session_agents`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        agent_id: str,
        template: str,
        *,
        ttl_s: float,
        idle_s: float | None = None,
        label: str | None = None,
    ) -> SessionAgent:
        """Record a new session agent (the running gateway starts it on its next reload)."""
        now = now_ms()
        await self._db.execute(
            "INSERT INTO session_agents (agent_id, template, label, created_at, expires_at,"
            " idle_s) VALUES ($1, $2, $3, $4, $5, $6)",
            agent_id,
            template,
            label,
            now,
            now + int(ttl_s * 1000),
            None if idle_s is None else int(idle_s),
        )
        found = await self.get(agent_id)
        assert found is not None
        return found

    async def get(self, agent_id: str) -> SessionAgent | None:
        """One session agent, ended or not."""
        row = await self._db.fetchone("SELECT * FROM session_agents WHERE agent_id = $1", agent_id)
        return None if row is None else _row(row)

    async def active(self) -> list[SessionAgent]:
        """Session agents not ended yet, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM session_agents WHERE ended_at IS NULL ORDER BY created_at"
        )
        return [_row(r) for r in rows]

    async def all(self, limit: int = 100) -> list[SessionAgent]:
        """The newest session agents, ended ones included."""
        rows = await self._db.fetchall(
            "SELECT * FROM session_agents ORDER BY created_at DESC LIMIT $1", limit
        )
        return [_row(r) for r in rows]

    async def end(self, agent_id: str, reason: str) -> bool:
        """Mark a session agent ended (once); True if this call ended it."""
        changed = await self._db.execute(
            "UPDATE session_agents SET ended_at = $2, ended_reason = $3"
            " WHERE agent_id = $1 AND ended_at IS NULL",
            agent_id,
            now_ms(),
            reason,
        )
        return changed > 0

    async def last_turn_ms(self, agent_id: str) -> int | None:
        """When the agent's newest turn last changed (for the idle limit)."""
        value = await self._db.fetchval(
            "SELECT MAX(updated_at) FROM turns WHERE agent_id = $1", agent_id
        )
        return None if value is None else int(value)
