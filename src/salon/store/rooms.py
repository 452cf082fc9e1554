"""Rooms Salon knows and what they are bound to."""

from __future__ import annotations

from salon.store.db import Database, Row
from salon.store.records import RoomKind, RoomRecord, now_ms


def record_of(row: Row) -> RoomRecord:
    """A ``rooms`` row (or one with its columns) as a record."""
    return RoomRecord(
        room_id=row["room_id"],
        kind=RoomKind(row["kind"]),
        agent_id=row["agent_id"],
        alias=row["alias"],
        owner=row["owner"],
        archived=bool(row["archived"]),
        name=row["name"],
    )


class Rooms:
    """The ``rooms`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(
        self,
        room_id: str,
        kind: RoomKind,
        *,
        agent_id: str | None = None,
        alias: str | None = None,
        owner: str | None = None,
        name: str | None = None,
    ) -> None:
        """Record (or update) what a room is."""
        await self._db.execute(
            "INSERT INTO rooms (room_id, kind, agent_id, alias, owner, name, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (room_id) DO UPDATE SET kind = excluded.kind,"
            " agent_id = excluded.agent_id, alias = excluded.alias, owner = excluded.owner,"
            " name = COALESCE(excluded.name, rooms.name), archived = 0",
            room_id,
            kind.value,
            agent_id,
            alias,
            owner,
            name,
            now_ms(),
        )

    async def get(self, room_id: str) -> RoomRecord | None:
        """What Salon knows of a room, if anything."""
        row = await self._db.fetchone("SELECT * FROM rooms WHERE room_id = $1", room_id)
        return None if row is None else record_of(row)

    async def chats_of(self, owner: str) -> list[RoomRecord]:
        """A person's active (not archived) chat rooms, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM rooms WHERE kind = 'chat' AND owner = $1 AND archived = 0"
            " ORDER BY created_at",
            owner,
        )
        return [record_of(r) for r in rows]

    async def active_chats(self) -> list[RoomRecord]:
        """Everyone's active (not archived) chat rooms, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM rooms WHERE kind = 'chat' AND archived = 0 ORDER BY created_at"
        )
        return [record_of(r) for r in rows]

    async def rename(self, room_id: str, name: str) -> None:
        """Change a room's recorded name."""
        await self._db.execute("UPDATE rooms SET name = $2 WHERE room_id = $1", room_id, name)

    async def archive(self, room_id: str) -> None:
        """Mark a room archived: it no longer routes."""
        await self._db.execute("UPDATE rooms SET archived = 1 WHERE room_id = $1", room_id)

    async def agent_rooms(self) -> list[RoomRecord]:
        """Every agent's own room, of agents hosted now or before."""
        rows = await self._db.fetchall(
            "SELECT * FROM rooms WHERE kind = 'agent' ORDER BY created_at"
        )
        return [record_of(r) for r in rows]

    async def agent_room(self, agent_id: str) -> RoomRecord | None:
        """The agent's own room in the Space."""
        row = await self._db.fetchone(
            "SELECT * FROM rooms WHERE kind = 'agent' AND agent_id = $1", agent_id
        )
        return None if row is None else record_of(row)
