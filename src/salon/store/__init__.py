"""Durable state. Everything that must survive a restart goes through here."""

from __future__ import annotations

from salon.store.approvals import Approvals
from salon.store.appservice import AppserviceTxns, AppserviceUsers
from salon.store.cron import CronRuns
from salon.store.crypto import CryptoStore
from salon.store.db import Database
from salon.store.delegations import Delegations
from salon.store.identities import Identities
from salon.store.inbox import Inbox
from salon.store.invites import Invites
from salon.store.kv import KV
from salon.store.leases import Leases
from salon.store.retention import Retention
from salon.store.rooms import Rooms
from salon.store.saved import Decisions, SavedContexts
from salon.store.session_agents import SessionAgents
from salon.store.sessions import Sessions
from salon.store.turns import Turns
from salon.store.users import Users


class Store:
    """The store facade: one database, one repository per table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.identities = Identities(db)
        self.inbox = Inbox(db)
        self.turns = Turns(db)
        self.rooms = Rooms(db)
        self.kv = KV(db)
        self.sessions = Sessions(db)
        self.users = Users(db)
        self.saved = SavedContexts(db)
        self.decisions = Decisions(db)
        self.delegations = Delegations(db)
        self.invites = Invites(db)
        self.cron = CronRuns(db)
        self.session_agents = SessionAgents(db)
        self.retention = Retention(db)
        self.appservice_txns = AppserviceTxns(db)
        self.appservice_users = AppserviceUsers(db)
        self.leases = Leases(db)
        self.crypto = CryptoStore(db)
        self.approvals = Approvals(db)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> Store:
        """Open the store at ``url`` (``sqlite:///path`` or ``postgresql://…``, with up to
        ``pool_size`` connections), migrating it to the latest schema."""
        return cls(await Database.open(url, pool_size=pool_size))

    async def close(self) -> None:
        """Close the underlying database."""
        await self.db.close()

    async def size_bytes(self) -> int:
        """The bytes the store takes on disk (SQLite: the file and its WAL; PostgreSQL:
        the database's size on the server)."""
        return await self.db.size_bytes()

    async def reclaim(self, max_pages: int = 500) -> int:
        """Give space freed by deletes back to the file system, a bounded step at a
        time; returns the pages given back (0 where the store cannot, or PostgreSQL,
        whose autovacuum makes the space reusable)."""
        return await self.db.reclaim(max_pages)


__all__ = ["Store"]
