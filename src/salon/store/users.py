"""People Salon knows: selected agent, personal Space, language."""

from __future__ import annotations

from dataclasses import dataclass

from salon.store.db import Database
from salon.store.records import RoomRecord, now_ms
from salon.store.rooms import record_of


@dataclass(frozen=True)
class UserRecord:
    """One person's durable choices."""

    user_id: str
    selected_agent: str | None
    space_id: str | None
    locale: str | None


class Users:
    """The ``users`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: str) -> UserRecord:
        """The person's record (an empty one if never seen)."""
        row = await self._db.fetchone("SELECT * FROM users WHERE user_id = $1", user_id)
        if row is None:
            return UserRecord(user_id, None, None, None)
        return UserRecord(row["user_id"], row["selected_agent"], row["space_id"], row["locale"])

    async def get_with_room(
        self, user_id: str, room_id: str
    ) -> tuple[UserRecord, RoomRecord | None]:
        """The person's record and the room's (None if unknown) in one read: both are
        read for every message, and a store trip apiece showed (bench/scale.py)."""
        rows = await self._db.fetchall(
            "SELECT u.selected_agent, u.space_id, u.locale, r.room_id, r.kind, r.agent_id,"
            " r.alias, r.owner, r.archived, r.name FROM (SELECT 1 AS one) AS k"
            " LEFT JOIN users u ON u.user_id = $1 LEFT JOIN rooms r ON r.room_id = $2",
            user_id,
            room_id,
        )
        row = rows[0]
        user = UserRecord(user_id, row["selected_agent"], row["space_id"], row["locale"])
        return user, None if row["room_id"] is None else record_of(row)

    async def _set(self, user_id: str, column: str, value: str | None) -> None:
        # `column` comes from this module only, never from input.
        await self._db.execute(
            f"INSERT INTO users (user_id, {column}, created_at) VALUES ($1, $2, $3)"
            f" ON CONFLICT (user_id) DO UPDATE SET {column} = excluded.{column}",
            user_id,
            value,
            now_ms(),
        )

    async def select_agent(self, user_id: str, agent_id: str) -> None:
        """Persist the person's selected agent."""
        await self._set(user_id, "selected_agent", agent_id)

    async def set_space(self, user_id: str, space_id: str) -> None:
        """Remember the person's own Space."""
        await self._set(user_id, "space_id", space_id)

    async def set_locale(self, user_id: str, locale: str) -> None:
        """Persist the person's language."""
        await self._set(user_id, "locale", locale)
