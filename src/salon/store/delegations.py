"""Delegations between agents: what was asked, of whom, and how it ended.

A row is keyed by (delegation id, direction): ``out`` when one of our agents
delegated, ``in`` when one of our agents was asked. With both agents in one
gateway the same id has one row each way. Every per-id method takes
``direction`` (default ``out``).

States move forward only::

    pending → sent → accepted → progress → completed | failed | rejected | timeout

``pending`` is persisted but not yet sent; the last four are terminal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from salon.store.db import Database, Row
from salon.store.records import now_ms


class DelegationPhase(StrEnum):
    """A delegation's stored state: the protocol's states plus our own bookkeeping.

    Values shared with :class:`salon.coordination.protocol.DelegationState` are
    spelled the same, so a received status's state can be stored as is.
    """

    PENDING = "pending"
    SENT = "sent"
    ACCEPTED = "accepted"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    TIMEOUT = "timeout"


class DelegationDirection(StrEnum):
    OUT = "out"  # one of our agents delegated
    IN = "in"  # one of our agents was asked


TERMINAL_PHASES: frozenset[DelegationPhase] = frozenset(
    {
        DelegationPhase.COMPLETED,
        DelegationPhase.FAILED,
        DelegationPhase.REJECTED,
        DelegationPhase.TIMEOUT,
    }
)
_RANK = {
    DelegationPhase.PENDING: 0,
    DelegationPhase.SENT: 1,
    DelegationPhase.ACCEPTED: 2,
    DelegationPhase.PROGRESS: 3,
    **{phase: 4 for phase in TERMINAL_PHASES},
}
_TERMINAL_SQL = "('completed', 'failed', 'rejected', 'timeout')"


def _earlier(phase: DelegationPhase) -> list[str]:
    return [p.value for p, rank in _RANK.items() if rank < _RANK[phase]]


@dataclass(frozen=True)
class DelegationRecord:
    """One row of the ``delegations`` table.

    ``created_at`` / ``updated_at`` left at 0 are filled in by :meth:`Delegations.create`.
    ``refs`` are the request's work references, JSON-ready (see
    :mod:`salon.coordination.refs`); stored as a JSON list, NULL when there are none.
    """

    id: str
    direction: DelegationDirection
    from_agent: str
    to_agent: str
    task: str
    root: str
    chain: tuple[str, ...]
    hop: int
    target_room: str
    deadline_ts: int
    context: str | None = None
    parent: str | None = None
    origin_room: str | None = None
    origin_event: str | None = None
    request_event_id: str | None = None
    state: DelegationPhase = DelegationPhase.PENDING
    result: str | None = None
    error: str | None = None
    reinjected: bool = False
    refs: tuple[dict[str, Any], ...] = field(default=(), hash=False)  # dicts do not hash
    # The person the work is done for (the request's ``for_user``): a re-sent request
    # and a re-run task after a crash must say the same.
    for_user: str | None = None
    created_at: int = 0
    updated_at: int = 0

    @property
    def terminal(self) -> bool:
        """Whether the delegation has ended (its state can no longer change)."""
        return self.state in TERMINAL_PHASES


def _record(row: Row) -> DelegationRecord:
    return DelegationRecord(
        id=row["id"],
        direction=DelegationDirection(row["direction"]),
        from_agent=row["from_agent"],
        to_agent=row["to_agent"],
        task=row["task"],
        root=row["root"],
        chain=tuple(json.loads(row["chain"])),
        hop=row["hop"],
        target_room=row["target_room"],
        deadline_ts=row["deadline_ts"],
        context=row["context"],
        parent=row["parent"],
        origin_room=row["origin_room"],
        origin_event=row["origin_event"],
        request_event_id=row["request_event_id"],
        state=DelegationPhase(row["state"]),
        result=row["result"],
        error=row["error"],
        reinjected=bool(row["reinjected"]),
        refs=_refs(row["refs"]),
        for_user=row["for_user"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _refs(column: str | None) -> tuple[dict[str, Any], ...]:
    """The stored refs (a JSON list of objects); a column that is not one gives none."""
    try:
        refs = json.loads(column) if column else []
    except ValueError:
        return ()
    if not isinstance(refs, list):
        return ()
    return tuple(ref for ref in refs if isinstance(ref, dict))


class Delegations:
    """The ``delegations`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, record: DelegationRecord) -> bool:
        """Insert ``record``; False (and no change) if that id and direction already exist."""
        now = now_ms()
        changed = await self._db.execute(
            "INSERT INTO delegations (id, direction, from_agent, to_agent, task, context,"
            " parent, root, chain, hop, origin_room, origin_event, target_room,"
            " request_event_id, state, result, error, deadline_ts, reinjected,"
            " created_at, updated_at, refs, for_user)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
            " $17, $18, $19, $20, $21, $22, $23) ON CONFLICT (id, direction) DO NOTHING",
            record.id,
            DelegationDirection(record.direction).value,
            record.from_agent,
            record.to_agent,
            record.task,
            record.context,
            record.parent,
            record.root,
            json.dumps(list(record.chain)),
            record.hop,
            record.origin_room,
            record.origin_event,
            record.target_room,
            record.request_event_id,
            DelegationPhase(record.state).value,
            record.result,
            record.error,
            record.deadline_ts,
            int(record.reinjected),
            record.created_at or now,
            record.updated_at or now,
            json.dumps(list(record.refs)) if record.refs else None,
            record.for_user,
        )
        return changed > 0

    async def get(
        self, id: str, direction: str = DelegationDirection.OUT
    ) -> DelegationRecord | None:
        """One delegation, or None."""
        row = await self._db.fetchone(
            "SELECT * FROM delegations WHERE id = $1 AND direction = $2",
            id,
            DelegationDirection(direction).value,
        )
        return None if row is None else _record(row)

    async def set_state(
        self,
        id: str,
        state: str,
        *,
        result: str | None = None,
        error: str | None = None,
        direction: str = DelegationDirection.OUT,
    ) -> bool:
        """Move a delegation forward to ``state``; True only if its state changed.

        The rule: a state only moves forward (pending → sent → accepted →
        progress → terminal). A repeated or older state (``accepted`` after
        ``progress``, a second ``progress``) changes nothing and returns False.
        Nothing leaves a terminal state (completed, failed, rejected, timeout):
        the first ending wins. A result that arrives after the end — a late
        completion after a timeout — is still recorded in ``result`` if none
        is stored yet, but the state stays and False is returned, so whoever
        acts on True (notices, re-injection) acts once.

        ``result`` and ``error`` are stored with the move (None keeps what is there).
        ``state`` may be a protocol ``DelegationState`` or any :class:`DelegationPhase` value.
        """
        phase = DelegationPhase(state)
        way = DelegationDirection(direction).value
        earlier = _earlier(phase)
        if earlier:
            marks = ", ".join(f"${n}" for n in range(7, 7 + len(earlier)))
            changed = await self._db.execute(
                "UPDATE delegations SET state = $3, result = COALESCE($4, result),"
                " error = COALESCE($5, error), updated_at = $6"
                f" WHERE id = $1 AND direction = $2 AND state IN ({marks})",
                id,
                way,
                phase.value,
                result,
                error,
                now_ms(),
                *earlier,
            )
            if changed:
                return True
        if result is not None:
            await self._db.execute(
                "UPDATE delegations SET result = $3, updated_at = $4"
                f" WHERE id = $1 AND direction = $2 AND state IN {_TERMINAL_SQL}"
                " AND result IS NULL",
                id,
                way,
                result,
                now_ms(),
            )
        return False

    async def set_request_event(
        self, id: str, event_id: str, *, direction: str = DelegationDirection.OUT
    ) -> None:
        """Remember the request's event id; a ``pending`` delegation becomes ``sent``."""
        await self._db.execute(
            "UPDATE delegations SET request_event_id = $3,"
            " state = CASE WHEN state = 'pending' THEN 'sent' ELSE state END, updated_at = $4"
            " WHERE id = $1 AND direction = $2",
            id,
            DelegationDirection(direction).value,
            event_id,
            now_ms(),
        )

    async def mark_reinjected(self, id: str, *, direction: str = DelegationDirection.OUT) -> bool:
        """Claim the hand-back of the result: True for the first caller only, ever."""
        changed = await self._db.execute(
            "UPDATE delegations SET reinjected = 1, updated_at = $3"
            " WHERE id = $1 AND direction = $2 AND reinjected = 0",
            id,
            DelegationDirection(direction).value,
            now_ms(),
        )
        return changed > 0

    async def undelivered(self, direction: str = DelegationDirection.OUT) -> list[DelegationRecord]:
        """Delegations that ended but whose outcome was never handed back (oldest first)."""
        rows = await self._db.fetchall(
            f"SELECT * FROM delegations WHERE state IN {_TERMINAL_SQL} AND reinjected = 0"
            " AND direction = $1 ORDER BY updated_at",
            DelegationDirection(direction).value,
        )
        return [_record(r) for r in rows]

    async def undelivered_from(self, origin_event: str, from_agent: str) -> list[DelegationRecord]:
        """Delegations a turn made that ended but were never handed back to it."""
        rows = await self._db.fetchall(
            f"SELECT * FROM delegations WHERE origin_event = $1 AND from_agent = $2"
            f" AND direction = 'out' AND state IN {_TERMINAL_SQL} AND reinjected = 0",
            origin_event,
            from_agent,
        )
        return [_record(r) for r in rows]

    async def open(self, direction: str | None = None) -> list[DelegationRecord]:
        """Delegations not yet ended (oldest first), of one direction or both."""
        sql = f"SELECT * FROM delegations WHERE state NOT IN {_TERMINAL_SQL}"
        args: list[str] = []
        if direction is not None:
            sql += " AND direction = $1"
            args.append(DelegationDirection(direction).value)
        rows = await self._db.fetchall(sql + " ORDER BY created_at, id", *args)
        return [_record(r) for r in rows]

    async def expired(self, now_ms: int, direction: str | None = None) -> list[DelegationRecord]:
        """Open delegations whose deadline is at or before ``now_ms`` (earliest deadline first)."""
        sql = f"SELECT * FROM delegations WHERE state NOT IN {_TERMINAL_SQL} AND deadline_ts <= $1"
        args: list[int | str] = [now_ms]
        if direction is not None:
            sql += " AND direction = $2"
            args.append(DelegationDirection(direction).value)
        rows = await self._db.fetchall(sql + " ORDER BY deadline_ts, id", *args)
        return [_record(r) for r in rows]

    async def recent(self, limit: int = 50) -> list[DelegationRecord]:
        """The latest delegations, newest first (for ``salon status``)."""
        rows = await self._db.fetchall(
            "SELECT * FROM delegations ORDER BY created_at DESC, id DESC LIMIT $1", limit
        )
        return [_record(r) for r in rows]
