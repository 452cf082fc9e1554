"""Leases: which gateway process holds what, when several share one database.

Every process has an owner id and a lease length. What it claims (inbox rows,
open turns, a named job such as ``leader``) is its own until ``lease_until``,
which it extends while it lives (a heartbeat); a process killed with -9 stops
extending, and once its leases run out another process claims the work.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from salon.store.db import Database
from salon.store.records import now_ms

LEADER = "leader"


@dataclass(frozen=True)
class Holder:
    """This process as an owner of claims: its id and how long a claim lasts."""

    owner: str
    lease_ms: int

    def until(self) -> int:
        """When a claim taken or extended now runs out (ms)."""
        return now_ms() + self.lease_ms

    @staticmethod
    def new_owner_id() -> str:
        """A fresh id for one process's life: host, pid and a random tail."""
        return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Leases:
    """The ``leases`` table: named work one process at a time does for all."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def acquire(self, name: str, owner: str, until: int) -> bool:
        """Take or extend the lease ``name`` for ``owner`` until ``until``; True if it
        holds it now (it did, nobody did, or the holder's lease ran out)."""
        rows = await self._db.write_returning(
            "INSERT INTO leases (name, owner, lease_until) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
            " lease_until = excluded.lease_until"
            " WHERE leases.owner = excluded.owner OR leases.lease_until < $4"
            " RETURNING owner",
            name,
            owner,
            until,
            now_ms(),
        )
        return bool(rows)

    async def holder(self, name: str) -> str | None:
        """Who holds ``name`` now (None: nobody, or the lease ran out)."""
        value = await self._db.fetchval(
            "SELECT owner FROM leases WHERE name = $1 AND lease_until >= $2", name, now_ms()
        )
        return None if value is None else str(value)

    async def release(self, name: str, owner: str) -> None:
        """Give ``name`` up (a clean stop), so another process takes it at once."""
        await self._db.execute("DELETE FROM leases WHERE name = $1 AND owner = $2", name, owner)
