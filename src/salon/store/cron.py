"""Cron runs: one row per (agent, job, scheduled time), inserted by whoever runs it.

The insert is the claim (``ON CONFLICT DO NOTHING``): of all the schedulers that
see a scheduled time come (after restarts, or in several processes sharing the
store), exactly one gets the row and submits the run's turn. How the run went
is the state of that ledgered turn, joined in when runs are read.
"""

from __future__ import annotations

from dataclasses import dataclass

from salon.store.db import Database, Row
from salon.store.records import now_ms

CLAIMED = "claimed"

# Each job's latest run, with the state of its turn (shared with `salon cron list`,
# which reads the store file directly).
LAST_RUNS_SQL = (
    "SELECT c.*, t.state AS turn_state FROM cron_runs c"
    " LEFT JOIN turns t ON t.event_id = c.turn_id AND t.agent_id = c.agent_id"
    " WHERE c.scheduled_ts = (SELECT MAX(m.scheduled_ts) FROM cron_runs m"
    "   WHERE m.agent_id = c.agent_id AND m.job_id = c.job_id)"
    " ORDER BY c.agent_id, c.job_id"
)


@dataclass(frozen=True)
class CronRun:
    """One claimed run; ``turn_state`` is its turn's ledger state (None: no turn row)."""

    agent_id: str
    job_id: str
    scheduled_ts: int  # epoch seconds
    state: str
    catch_up: bool  # a time missed while the gateway was down, run when it came back
    claimed_at: int  # ms epoch
    turn_id: str
    turn_state: str | None = None


def cron_run(row: Row) -> CronRun:
    """A run from a ``cron_runs`` row (with ``turn_state`` if the query joined it)."""
    keys = row.keys()
    return CronRun(
        agent_id=row["agent_id"],
        job_id=row["job_id"],
        scheduled_ts=int(row["scheduled_ts"]),
        state=row["state"],
        catch_up=bool(row["catch_up"]),
        claimed_at=int(row["claimed_at"]),
        turn_id=row["turn_id"],
        turn_state=row["turn_state"] if "turn_state" in keys else None,
    )


class CronRuns:
    """The ``cron_runs`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self,
        agent_id: str,
        job_id: str,
        scheduled_ts: int,
        turn_id: str,
        *,
        catch_up: bool = False,
    ) -> bool:
        """Claim the run of ``job_id`` at ``scheduled_ts``; True if this caller won it."""
        return bool(
            await self._db.execute(
                "INSERT INTO cron_runs (agent_id, job_id, scheduled_ts, state, catch_up,"
                " claimed_at, turn_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (agent_id, job_id, scheduled_ts) DO NOTHING",
                agent_id,
                job_id,
                scheduled_ts,
                CLAIMED,
                int(catch_up),
                now_ms(),
                turn_id,
            )
        )

    async def last(self, agent_id: str, job_id: str) -> CronRun | None:
        """The job's latest run (by scheduled time), if it ever ran."""
        row = await self._db.fetchone(
            "SELECT c.*, t.state AS turn_state FROM cron_runs c"
            " LEFT JOIN turns t ON t.event_id = c.turn_id AND t.agent_id = c.agent_id"
            " WHERE c.agent_id = $1 AND c.job_id = $2 ORDER BY c.scheduled_ts DESC LIMIT 1",
            agent_id,
            job_id,
        )
        return None if row is None else cron_run(row)

    async def last_runs(self) -> dict[tuple[str, str], CronRun]:
        """Every job's latest run, by (agent, job)."""
        rows = await self._db.fetchall(LAST_RUNS_SQL)
        return {(r["agent_id"], r["job_id"]): cron_run(r) for r in rows}

    async def runs(
        self, agent_id: str | None = None, job_id: str | None = None, *, limit: int = 1000
    ) -> list[CronRun]:
        """Runs, oldest scheduled time first, of one agent (and job) or of all."""
        rows = await self._db.fetchall(
            "SELECT c.*, t.state AS turn_state FROM cron_runs c"
            " LEFT JOIN turns t ON t.event_id = c.turn_id AND t.agent_id = c.agent_id"
            # CAST: PostgreSQL needs each parameter's type where it stands alone.
            " WHERE (CAST($1 AS TEXT) IS NULL OR c.agent_id = $1)"
            " AND (CAST($2 AS TEXT) IS NULL OR c.job_id = $2)"
            " ORDER BY c.scheduled_ts, c.agent_id, c.job_id LIMIT $3",
            agent_id,
            job_id,
            limit,
        )
        return [cron_run(r) for r in rows]
