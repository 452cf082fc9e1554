"""Appservice transactions already admitted (``appservice_txns``)."""

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
