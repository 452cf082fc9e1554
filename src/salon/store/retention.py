"""What the retention janitor may delete: finished rows older than a cut-off.

Each rule deletes at most ``limit`` rows per call (the janitor calls again until a
call deletes fewer), so no single write holds the store for long. Open work is
never deleted, whatever its age: an inbox row still pending, a turn admitted or
running (and what it will read when it runs again, its approvals too), an open
delegation or one whose outcome was never handed back, a cron run whose turn is
open, and each job's latest run (the scheduler's cursor), a pending invitation.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from salon.store.db import Database
from salon.store.delegations import TERMINAL_PHASES
from salon.store.invites import InviteState
from salon.store.records import InboxState, TurnState


def _list(values: Iterable[StrEnum]) -> str:
    """A SQL list of enum values (our own constants, never input)."""
    return "(" + ", ".join(sorted(f"'{v.value}'" for v in values)) + ")"


OPEN_TURNS = _list([TurnState.ADMITTED, TurnState.RUNNING])
CLOSED_TURNS = _list([TurnState.REPLIED, TurnState.FAILED, TurnState.STOPPED])
HANDLED_INBOX = _list([InboxState.DONE, InboxState.DROPPED])
ENDED_DELEGATIONS = _list(TERMINAL_PHASES)
ENDED_INVITES = _list([InviteState.JOINED, InviteState.REFUSED, InviteState.FAILED])

# One statement per table, in the order the janitor runs them ($1: the cut-off in ms,
# $2: the batch size). Cron runs go before turns, since a kept run keeps its turn.
RULES: dict[str, str] = {
    "cron_runs": (
        "DELETE FROM cron_runs WHERE rowid IN (SELECT c.rowid FROM cron_runs c"
        " WHERE c.claimed_at < $1"
        " AND c.scheduled_ts < (SELECT MAX(m.scheduled_ts) FROM cron_runs m"
        "   WHERE m.agent_id = c.agent_id AND m.job_id = c.job_id)"
        " AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.event_id = c.turn_id"
        f"   AND t.agent_id = c.agent_id AND t.state IN {OPEN_TURNS})"
        " LIMIT $2)"
    ),
    "turns": (
        "DELETE FROM turns WHERE rowid IN (SELECT t.rowid FROM turns t"
        f" WHERE t.state IN {CLOSED_TURNS} AND t.updated_at < $1"
        " AND NOT EXISTS (SELECT 1 FROM cron_runs c"
        "   WHERE c.turn_id = t.event_id AND c.agent_id = t.agent_id)"
        " LIMIT $2)"
    ),
    # By the event's own time too: the dispatcher refuses events older than the
    # cut-off, so an event whose row is gone is never admitted (and answered) again.
    "inbox": (
        "DELETE FROM inbox WHERE rowid IN (SELECT i.rowid FROM inbox i"
        f" WHERE i.state IN {HANDLED_INBOX} AND i.received_at < $1 AND i.origin_ts < $1"
        " AND NOT EXISTS (SELECT 1 FROM turns t"
        f"   WHERE t.event_id = i.event_id AND t.state IN {OPEN_TURNS})"
        " LIMIT $2)"
    ),
    # Ended, its outcome handed back ('out'), and no open turn reads it: neither the
    # turn that delegated (a re-run finds its delegation by id) nor the asked task.
    "delegations": (
        "DELETE FROM delegations WHERE rowid IN (SELECT d.rowid FROM delegations d"
        f" WHERE d.state IN {ENDED_DELEGATIONS} AND d.updated_at < $1"
        " AND (d.direction = 'in' OR d.reinjected = 1)"
        " AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.event_id = d.origin_event"
        f"   AND t.agent_id = d.from_agent AND t.state IN {OPEN_TURNS})"
        " AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.event_id = 'task:' || d.id"
        f"   AND t.agent_id = d.to_agent AND t.state IN {OPEN_TURNS})"
        " LIMIT $2)"
    ),
    # Whatever its state, once no open turn may ask for it again (a re-run reuses it).
    "approvals": (
        "DELETE FROM approvals WHERE id IN (SELECT a.id FROM approvals a"
        " WHERE a.created_at < $1"
        " AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.event_id = a.turn_id"
        f"   AND t.agent_id = a.agent_id AND t.state IN {OPEN_TURNS})"
        " LIMIT $2)"
    ),
    # A turn's tool steps, once no open turn may re-run and reuse them.
    "tool_calls": (
        "DELETE FROM tool_calls WHERE (event_id, agent_id, step) IN"
        " (SELECT c.event_id, c.agent_id, c.step FROM tool_calls c WHERE c.created_at < $1"
        " AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.event_id = c.event_id"
        f"   AND t.agent_id = c.agent_id AND t.state IN {OPEN_TURNS})"
        " LIMIT $2)"
    ),
    "decisions": (
        "DELETE FROM decisions WHERE rowid IN (SELECT rowid FROM decisions"
        " WHERE created_at < $1 LIMIT $2)"
    ),
    "invites": (
        "DELETE FROM invites WHERE rowid IN (SELECT rowid FROM invites"
        f" WHERE state IN {ENDED_INVITES} AND updated_at < $1 LIMIT $2)"
    ),
    # A transaction the homeserver had its answer to is never sent again; an unanswered
    # one is retried within minutes, far inside the window.
    "appservice_txns": (
        "DELETE FROM appservice_txns WHERE txn_id IN (SELECT txn_id FROM appservice_txns"
        " WHERE at < $1 LIMIT $2)"
    ),
    "session_messages": (
        "DELETE FROM session_messages WHERE id IN (SELECT id FROM session_messages"
        " WHERE created_at < $1 LIMIT $2)"
    ),
}
TABLES = tuple(RULES)


class Retention:
    """Deleting old finished rows, one bounded batch at a time."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def prune(self, table: str, cutoff_ms: int, limit: int) -> int:
        """Delete up to ``limit`` finished rows of ``table`` older than ``cutoff_ms``;
        returns how many went."""
        return await self._db.execute(RULES[table], cutoff_ms, limit)

    async def oversized_sessions(self, keep: int, limit: int = 100) -> list[str]:
        """Sessions holding more than ``keep`` messages (stored before a bound was set)."""
        rows = await self._db.fetchall(
            "SELECT session_key FROM session_messages GROUP BY session_key"
            " HAVING COUNT(*) > $1 LIMIT $2",
            keep,
            limit,
        )
        return [r["session_key"] for r in rows]
