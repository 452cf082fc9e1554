"""Saved session snapshots (!save / !load) and routing decisions (!why)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from salon.store.db import Database
from salon.store.records import now_ms
from salon.store.sessions import StoredMessage


@dataclass(frozen=True)
class Snapshot:
    """A saved copy of a session."""

    id: int
    name: str
    messages: tuple[StoredMessage, ...]


@dataclass(frozen=True)
class Decision:
    """Where one message went and why."""

    event_id: str
    room_id: str
    agents: tuple[str, ...]
    reason: str
    detail: str
    sender: str | None = None  # None: taken from the event's inbox row


class SavedContexts:
    """The ``saved_contexts`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(
        self, user_id: str, agent_id: str, name: str, messages: list[StoredMessage]
    ) -> None:
        """Store a snapshot of a session under ``name``."""
        snapshot = json.dumps(
            [
                {"role": m.role, "content": m.content, "tokens": m.tokens, "turn_id": m.turn_id}
                for m in messages
            ],
            ensure_ascii=False,
        )
        await self._db.execute(
            "INSERT INTO saved_contexts (user_id, agent_id, name, snapshot, created_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            user_id,
            agent_id,
            name,
            snapshot,
            now_ms(),
        )

    async def list(self, user_id: str, agent_id: str) -> list[Snapshot]:
        """The person's snapshots for an agent, oldest first."""
        rows = await self._db.fetchall(
            "SELECT id, name, snapshot FROM saved_contexts"
            " WHERE user_id = $1 AND agent_id = $2 ORDER BY id",
            user_id,
            agent_id,
        )
        return [
            Snapshot(
                r["id"],
                r["name"],
                tuple(
                    StoredMessage(m["role"], m["content"], m["tokens"], m.get("turn_id"))
                    for m in json.loads(r["snapshot"])
                ),
            )
            for r in rows
        ]


class Decisions:
    """The ``decisions`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, decision: Decision) -> None:
        """Remember a routing decision (idempotent per event)."""
        sql, args = self.statement(decision)
        await self._db.execute(sql, *args)

    @staticmethod
    def statement(decision: Decision) -> tuple[str, tuple[Any, ...]]:
        """The write that :meth:`record` runs, for a caller that sends it along with
        another (a turn's admission: one trip to the store, see ``Turns.admit``)."""
        # A routed message was admitted first, so its inbox row knows the sender
        # when the caller does not say.
        return (
            "INSERT INTO decisions (event_id, room_id, agents, reason, detail, created_at, sender)"
            " VALUES ($1, $2, $3, $4, $5, $6,"
            " COALESCE($7, (SELECT sender FROM inbox WHERE inbox.event_id = $1)))"
            " ON CONFLICT (event_id) DO NOTHING",
            (
                decision.event_id,
                decision.room_id,
                ",".join(decision.agents),
                decision.reason,
                decision.detail,
                now_ms(),
                decision.sender,
            ),
        )

    async def get(self, event_id: str) -> Decision | None:
        """The decision made for one message."""
        row = await self._db.fetchone("SELECT * FROM decisions WHERE event_id = $1", event_id)
        return None if row is None else _decision(row)

    async def last_in_room(
        self, room_id: str, *, excluding: Collection[str] = ()
    ) -> Decision | None:
        """The most recent decision in a room for a message not sent by ``excluding``."""
        senders = sorted(excluding)
        placeholders = ", ".join(f"${n}" for n in range(2, len(senders) + 2))
        unless = f" AND (sender IS NULL OR sender NOT IN ({placeholders}))" if senders else ""
        row = await self._db.fetchone(
            f"SELECT * FROM decisions WHERE room_id = $1{unless}"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            room_id,
            *senders,
        )
        return None if row is None else _decision(row)


def _decision(row: object) -> Decision:
    r: dict[str, str] = dict(row)  # type: ignore[call-overload]
    agents = tuple(a for a in r["agents"].split(",") if a)
    return Decision(r["event_id"], r["room_id"], agents, r["reason"], r["detail"], r["sender"])
