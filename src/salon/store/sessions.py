"""Conversation histories, one per session key, each owned by one agent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from salon.store.db import Database
from salon.store.kv import increment
from salon.store.records import now_ms

# Messages read per turn at most: far more than any context budget holds.
MAX_LOADED = 400
# Messages a session keeps by default (store.max_session_messages): what a turn reads.
MAX_STORED = MAX_LOADED
# Chat ids kept in memory (a few hundred bytes each), the oldest dropped first.
CACHED_CHAT_IDS = 100_000


@dataclass(frozen=True)
class StoredMessage:
    """One message of a session."""

    role: str
    content: str
    tokens: int
    turn_id: str | None


class Sessions:
    """The ``sessions`` and ``session_messages`` tables."""

    def __init__(self, db: Database, *, max_messages: int | None = None) -> None:
        self._db = db
        # Messages a session keeps (the newest; None: all). The gateway sets it.
        self.max_messages = max_messages
        # Chat ids known to be allocated. A sessions row is never deleted nor changed,
        # so a cached id stays true (in every process): two reads a turn saved.
        self._chat_ids: dict[str, str] = {}

    async def chat_id(self, session_key: str, agent_id: str) -> str:
        """The session's platform chat id, allocated once from a durable sequence."""
        known = self._chat_ids.get(session_key)
        if known is not None:
            return known
        chat_id = await self._allocate(session_key, agent_id)
        if len(self._chat_ids) >= CACHED_CHAT_IDS:
            del self._chat_ids[next(iter(self._chat_ids))]  # the oldest entry
        self._chat_ids[session_key] = chat_id
        return chat_id

    async def _allocate(self, session_key: str, agent_id: str) -> str:
        existing = await self._db.fetchval(
            "SELECT chat_id FROM sessions WHERE session_key = $1", session_key
        )
        if existing is not None:
            return str(existing)
        async with self._db.transaction() as tx:
            # Two racing first turns may both take a number: one is never used, none repeats.
            value = await increment(tx, "seq:chat_id")
            await tx.execute(
                "INSERT INTO sessions (session_key, agent_id, chat_id, created_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (session_key) DO NOTHING",
                session_key,
                agent_id,
                str(value),
                now_ms(),
            )
        return str(
            await self._db.fetchval(
                "SELECT chat_id FROM sessions WHERE session_key = $1", session_key
            )
        )

    async def messages(
        self, session_key: str, agent_id: str, *, limit: int = MAX_LOADED
    ) -> list[StoredMessage]:
        """The session's newest ``limit`` messages, oldest first; empty if the session is
        another agent's. (The history budget trims further; a long session must not be
        read whole on every turn.)"""
        rows = await self._db.fetchall(
            "SELECT m.role, m.content, m.tokens, m.turn_id FROM session_messages m"
            " JOIN sessions s ON s.session_key = m.session_key"
            " WHERE m.session_key = $1 AND s.agent_id = $2 ORDER BY m.id DESC LIMIT $3",
            session_key,
            agent_id,
            limit,
        )
        # By position (the columns above are StoredMessage's fields, in order): looking
        # 4 x 400 values up by name took a tenth of the event loop's time per message.
        return [StoredMessage(r[0], r[1], r[2], r[3]) for r in reversed(rows)]

    async def append_turn(
        self,
        session_key: str,
        agent_id: str,
        turn_id: str,
        messages: list[tuple[str, str, int]],
    ) -> None:
        """Add a turn's (role, content, tokens) messages once (a replayed turn is a no-op)."""
        await self.chat_id(session_key, agent_id)
        # One trip to the store, atomic (batch), not a transaction of 5-6 trips: this
        # runs after every reply (bench/scale.py --part cost).
        statements: list[tuple[str, Sequence[Any]]] = [
            (
                "INSERT INTO session_messages"
                " (session_key, turn_id, role, content, tokens, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (session_key, turn_id, role) DO NOTHING",
                (session_key, turn_id, role, content, tokens, now_ms()),
            )
            for role, content, tokens in messages
        ]
        if self.max_messages is not None:
            statements.append((_TRIM_SQL, (session_key, self.max_messages)))
        await self._db.batch(statements)

    async def trim(self, session_key: str, keep: int) -> int:
        """Keep only the session's newest ``keep`` messages; returns how many went."""
        return await _trim(self._db, session_key, keep)

    async def replace(self, session_key: str, agent_id: str, messages: list[StoredMessage]) -> None:
        """Make the session hold exactly ``messages`` (a `!load`)."""
        await self.chat_id(session_key, agent_id)
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM session_messages WHERE session_key = $1", session_key)
            for m in messages:
                await tx.execute(
                    "INSERT INTO session_messages"
                    " (session_key, turn_id, role, content, tokens, created_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6)"
                    " ON CONFLICT (session_key, turn_id, role) DO NOTHING",
                    session_key,
                    m.turn_id,
                    m.role,
                    m.content,
                    m.tokens,
                    now_ms(),
                )
            if self.max_messages is not None:
                await _trim(tx, session_key, self.max_messages)

    async def clear(self, session_key: str) -> None:
        """Forget a session's messages (its chat id stays)."""
        await self._db.execute("DELETE FROM session_messages WHERE session_key = $1", session_key)


# _trim's two steps in one statement: the boundary is NULL (nothing deleted) while the
# session holds no more than $2 messages.
_BOUNDARY = (
    "(SELECT id FROM session_messages WHERE session_key = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)"
)
# The rows go by id (IN a union): a WHERE with an OR walked every row of the session
# (400 by default), most of the SQLite thread's time per message (bench/scale.py
# --part cost); this way only the rows at and below the boundary are looked at.
_TRIM_SQL = (
    "DELETE FROM session_messages WHERE id IN ("
    f"SELECT id FROM session_messages WHERE session_key = $1 AND id <= {_BOUNDARY}"
    " UNION SELECT m.id FROM session_messages m WHERE m.session_key = $1 AND m.turn_id IN"
    f" (SELECT turn_id FROM session_messages WHERE session_key = $1 AND id <= {_BOUNDARY}))"
)


async def _trim(db: Database, session_key: str, keep: int) -> int:
    """Delete all but the newest ``keep`` messages of a session, a turn's messages
    together (a cut turn goes whole: no reply is left without its question)."""
    boundary = await db.fetchval(
        "SELECT id FROM session_messages WHERE session_key = $1 ORDER BY id DESC LIMIT 1 OFFSET $2",
        session_key,
        keep,
    )
    if boundary is None:
        return 0
    return await db.execute(
        "DELETE FROM session_messages WHERE session_key = $1 AND (id <= $2 OR turn_id IN"
        " (SELECT turn_id FROM session_messages WHERE session_key = $1 AND id <= $2))",
        session_key,
        boundary,
    )
