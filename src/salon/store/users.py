"""People Salon knows: selected agent, personal Space, language."""

from __future__ import annotations

from dataclasses import dataclass

from salon.store.db import Database
from salon.store.records import now_ms


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
