"""Appservice mode's durable facts: transactions already admitted (``appservice_txns``)
and users already registered (``appservice_users``)."""

from __future__ import annotations

from dataclasses import dataclass

from salon.store.db import Database
from salon.store.records import now_ms


@dataclass(frozen=True)
class ParkedTxn:
    """A transaction kept while the gateway was starting, to be admitted once ready."""

    txn_id: str
    seq: int | None
    body: str
    at: int = 0  # when it was parked (ms)
    tries: int = 0  # admissions that failed (not counting transient failures)
    reason: str | None = None  # the last failure's error
    set_aside_at: int | None = None  # when it was given up on (ms); None: still due


class AppserviceTxns:
    """The ids of the homeserver's transactions whose events are all in the inbox."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def seen(self, txn_id: str) -> bool:
        """Whether the transaction was admitted before."""
        row = await self._db.fetchone("SELECT 1 FROM appservice_txns WHERE txn_id = $1", txn_id)
        return row is not None

    async def record(self, txn_id: str, seq: int | None = None) -> None:
        """Remember the transaction (after its events were admitted); ``seq``: the
        homeserver's number for it, when it is one."""
        await self._db.execute(
            "INSERT INTO appservice_txns (txn_id, at, seq) VALUES ($1, $2, $3)"
            " ON CONFLICT (txn_id) DO NOTHING",
            txn_id,
            now_ms(),
            seq,
        )

    async def received(self, after: int, before: int, since: int) -> int:
        """How many of the homeserver's numbers between ``after`` and ``before`` (both
        excluded) any process of ours took (admitted or parked) at ``since`` (ms) or
        later."""
        value = await self._db.fetchval(
            "SELECT COUNT(DISTINCT seq) FROM (SELECT seq FROM appservice_txns"
            " WHERE seq > $1 AND seq < $2 AND at >= $3"
            " UNION ALL SELECT seq FROM appservice_parked"
            " WHERE seq > $1 AND seq < $2 AND at >= $3) AS taken",
            after,
            before,
            since,
        )
        return int(value or 0)

    async def park(self, txn_id: str, seq: int | None, body: str) -> bool:
        """Keep a transaction pushed before the gateway is ready; False: kept already."""
        return (
            await self._db.execute(
                "INSERT INTO appservice_parked (txn_id, seq, body, at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (txn_id) DO NOTHING",
                txn_id,
                seq,
                body,
                now_ms(),
            )
            > 0
        )

    async def parked(self) -> list[ParkedTxn]:
        """The transactions kept and still due (not set aside), in arrival order."""
        return await self._kept("set_aside_at IS NULL")

    async def set_aside(self) -> list[ParkedTxn]:
        """The transactions given up on after failing too often, in arrival order."""
        return await self._kept("set_aside_at IS NOT NULL")

    async def _kept(self, where: str) -> list[ParkedTxn]:
        rows = await self._db.fetchall(
            "SELECT txn_id, seq, body, at, tries, reason, set_aside_at FROM appservice_parked"
            f" WHERE {where} ORDER BY n"
        )
        return [
            ParkedTxn(
                str(r["txn_id"]),
                None if r["seq"] is None else int(r["seq"]),
                r["body"],
                int(r["at"]),
                int(r["tries"]),
                r["reason"],
                None if r["set_aside_at"] is None else int(r["set_aside_at"]),
            )
            for r in rows
        ]

    async def failed(self, txn_id: str, reason: str, max_tries: int) -> bool:
        """Count a failed admission of a kept transaction, with its error; at
        ``max_tries`` it is set aside (kept, no longer due). True: set aside now."""
        await self._db.execute(
            "UPDATE appservice_parked SET tries = tries + 1, reason = $2,"
            " set_aside_at = CASE WHEN tries + 1 >= $3 THEN CAST($4 AS BIGINT) ELSE NULL END"
            " WHERE txn_id = $1",
            txn_id,
            reason,
            max_tries,
            now_ms(),
        )
        at = await self._db.fetchval(
            "SELECT set_aside_at FROM appservice_parked WHERE txn_id = $1", txn_id
        )
        return at is not None

    async def retry(self, txn_id: str | None = None) -> int:
        """Make transactions set aside due again (all, or the one ``txn_id``), their
        tries counted from 0; the last error stays. Returns how many."""
        where = "set_aside_at IS NOT NULL" + (" AND txn_id = $1" if txn_id else "")
        return await self._db.execute(
            f"UPDATE appservice_parked SET tries = 0, set_aside_at = NULL WHERE {where}",
            *((txn_id,) if txn_id else ()),
        )

    async def unpark(self, txn_id: str) -> None:
        """Forget a kept transaction (its events were admitted, its id recorded)."""
        await self._db.execute("DELETE FROM appservice_parked WHERE txn_id = $1", txn_id)


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
