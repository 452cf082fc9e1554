"""Tool calls that wait for a person's OK, and how each was decided.

States move forward once: ``pending`` → ``approved`` | ``denied`` | ``timeout``. A
decision is one conditional update, so of two people answering at once (or a
person and the timeout) exactly one decides; the other is told what was decided.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from salon.store.db import Database, Row
from salon.store.records import now_ms


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class ApprovalRecord:
    """One row of ``approvals``: a call of a turn, where it was asked, how it ended.

    ``ignored`` lists answers that could not decide it: ``{"by", "why", "ts"}``.
    """

    id: str
    turn_id: str
    agent_id: str
    tool: str
    arguments: dict[str, Any]
    room_id: str
    for_user: str | None
    state: ApprovalState
    created_at: int
    deadline_at: int
    request_event_id: str | None = None
    decided_by: str | None = None
    reason: str | None = None
    decided_at: int | None = None
    ignored: tuple[dict[str, Any], ...] = ()

    @property
    def pending(self) -> bool:
        return self.state is ApprovalState.PENDING

    def to_json(self) -> dict[str, Any]:
        """The record as the admin API shows it."""
        return {
            "id": self.id,
            "turn_id": self.turn_id,
            "agent_id": self.agent_id,
            "tool": self.tool,
            "arguments": self.arguments,
            "room_id": self.room_id,
            "for_user": self.for_user,
            "state": self.state.value,
            "request_event_id": self.request_event_id,
            "decided_by": self.decided_by,
            "reason": self.reason,
            "created_at": self.created_at,
            "deadline_at": self.deadline_at,
            "decided_at": self.decided_at,
            "ignored": list(self.ignored),
        }


_COLUMNS = (
    "id, turn_id, agent_id, tool, arguments, room_id, for_user, state, created_at,"
    " deadline_at, request_event_id, decided_by, reason, decided_at, ignored"
)


def _record(row: Row) -> ApprovalRecord:
    return ApprovalRecord(
        id=row["id"],
        turn_id=row["turn_id"],
        agent_id=row["agent_id"],
        tool=row["tool"],
        arguments=json.loads(row["arguments"]),
        room_id=row["room_id"],
        for_user=row["for_user"],
        state=ApprovalState(row["state"]),
        created_at=int(row["created_at"]),
        deadline_at=int(row["deadline_at"]),
        request_event_id=row["request_event_id"],
        decided_by=row["decided_by"],
        reason=row["reason"],
        decided_at=None if row["decided_at"] is None else int(row["decided_at"]),
        ignored=tuple(json.loads(row["ignored"])) if row["ignored"] else (),
    )


class Approvals:
    """The ``approvals`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, record: ApprovalRecord) -> ApprovalRecord:
        """Store a pending approval unless one of that id exists; returns the stored row."""
        await self._db.execute(
            "INSERT INTO approvals (id, turn_id, agent_id, tool, arguments, room_id, for_user,"
            " state, created_at, deadline_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (id) DO NOTHING",
            record.id,
            record.turn_id,
            record.agent_id,
            record.tool,
            json.dumps(record.arguments, ensure_ascii=False, sort_keys=True),
            record.room_id,
            record.for_user,
            ApprovalState.PENDING.value,
            record.created_at or now_ms(),
            record.deadline_at,
        )
        stored = await self.get(record.id)
        assert stored is not None
        return stored

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM approvals WHERE id = $1", approval_id
        )
        return None if row is None else _record(row)

    async def by_request(self, event_id: str) -> ApprovalRecord | None:
        """The approval whose request message is ``event_id``."""
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM approvals WHERE request_event_id = $1", event_id
        )
        return None if row is None else _record(row)

    async def list(
        self, *, state: ApprovalState | None = None, limit: int = 100
    ) -> list[ApprovalRecord]:
        """Newest first; only those in ``state`` when given."""
        if state is None:
            rows = await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM approvals ORDER BY created_at DESC LIMIT $1", limit
            )
        else:
            rows = await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM approvals WHERE state = $1"
                " ORDER BY created_at DESC LIMIT $2",
                state.value,
                limit,
            )
        return [_record(r) for r in rows]

    async def set_request(self, approval_id: str, event_id: str) -> None:
        """Remember the request message (reactions and replies point at it)."""
        await self._db.execute(
            "UPDATE approvals SET request_event_id = $2 WHERE id = $1", approval_id, event_id
        )

    async def decide(
        self, approval_id: str, state: ApprovalState, *, by: str | None, reason: str
    ) -> bool:
        """Decide a pending approval; False if it was decided already (or is unknown)."""
        rows = await self._db.write_returning(
            "UPDATE approvals SET state = $2, decided_by = $3, reason = $4, decided_at = $5"
            " WHERE id = $1 AND state = 'pending' RETURNING id",
            approval_id,
            state.value,
            by,
            reason,
            now_ms(),
        )
        return bool(rows)

    async def note_ignored(self, approval_id: str, by: str, why: str) -> None:
        """Keep an answer that could not decide the approval, and why."""
        async with self._db.transaction() as tx:
            raw = await tx.fetchval("SELECT ignored FROM approvals WHERE id = $1", approval_id)
            notes = json.loads(raw) if raw else []
            notes.append({"by": by, "why": why, "ts": now_ms()})
            await tx.execute(
                "UPDATE approvals SET ignored = $2 WHERE id = $1",
                approval_id,
                json.dumps(notes[-20:], ensure_ascii=False),  # bounded: a flood keeps the last
            )
