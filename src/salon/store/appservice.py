"""Appservice mode's durable facts: transactions already admitted (``appservice_txns``)
and users already registered (``appservice_users``)."""

from __future__ import annotations

from salon.store.db import Database
from salon.store.records import now_ms


class AppserviceTxns:
    """The ids of the homeserver's transactions whose events are all in the inbox."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def seen(self, txn_id: str) -> bool:
        """Whether the transaction was admitted before."""
        row = await self._db.fetchone("SELECT 1 FROM appservice_txns WHERE txn_id = $1", txn_id)
        return row is not None

    async def record(self, txn_id: str) -> None:
        """Remember the transaction (after its events were admitted)."""
        await self._db.execute(
            "INSERT INTO appservice_txns (txn_id, at) VALUES ($1, $2)"
            " ON CONFLICT (txn_id) DO NOTHING",
            txn_id,
            now_ms(),
        )


class AppserviceUsers:
    """The users a registration (its key: see ``as_auth.registration_key``) has
    registered on the homeserver."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def registered(self, registration: str) -> set[str]:
        """The user ids registered under ``registration``."""
        rows = await self._db.fetchall(
            "SELECT user_id FROM appservice_users WHERE registration = $1", registration
        )
        return {str(r["user_id"]) for r in rows}

    async def record(self, registration: str, user_id: str) -> None:
        """Remember that ``user_id`` exists on the homeserver."""
        await self._db.execute(
            "INSERT INTO appservice_users (registration, user_id, at) VALUES ($1, $2, $3)"
            " ON CONFLICT (registration, user_id) DO NOTHING",
            registration,
            user_id,
            now_ms(),
        )
