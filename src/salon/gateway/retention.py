"""The retention janitor: old finished rows go, so the store stops growing.

Every few minutes (and once at start) it deletes, table by table, finished rows
older than ``store.retention_days`` (the rules, which never touch open work, are
in :mod:`salon.store.retention`), in batches with a pause between them so other
writers get the store in between. Then it gives the freed space back, a bounded
step at a time (a store created by this version; an older one reuses the pages).
At start it also trims sessions stored before ``store.max_session_messages``
bounded them (new messages are trimmed as they are written).
"""

from __future__ import annotations

import asyncio

import structlog

from salon._exceptions import SalonError
from salon.config.models import StoreConfig
from salon.metrics import RETENTION_PRUNED
from salon.store import Store
from salon.store.records import now_ms
from salon.store.retention import TABLES
from salon.supervisor import LoopHandle, Supervisor

log = structlog.get_logger("salon.gateway.retention")

EVERY_S = 300.0
BATCH = 500  # rows per delete: a few milliseconds of the store
PAUSE_S = 0.05  # between batches, for the writers waiting
RECLAIM_PAGES = 500  # pages given back per step (2 MB at 4 KiB pages: tens of ms)
DAY_MS = 86_400_000


def max_age_ms(config: StoreConfig) -> int | None:
    """How old (by its own timestamp) an event may be and still be admitted: rows
    older than this are deleted, so an older event may have been handled already."""
    days = config.retention_days
    return None if days is None else int(days * DAY_MS)


class RetentionJanitor:
    """Deletes old finished rows (a supervised loop)."""

    def __init__(
        self,
        store: Store,
        *,
        retention_days: float | None,
        max_session_messages: int | None = None,
        batch: int = BATCH,
        pause_s: float = PAUSE_S,
    ) -> None:
        self.store = store
        self.retention_ms = None if retention_days is None else int(retention_days * DAY_MS)
        self.max_session_messages = max_session_messages
        self.batch = batch
        self.pause_s = pause_s

    async def sweep(self, *, now: int | None = None) -> dict[str, int]:
        """Delete what is due now; returns the rows deleted per table."""
        pruned: dict[str, int] = {}
        if self.retention_ms is None:
            return pruned
        cutoff = (now_ms() if now is None else now) - self.retention_ms
        for table in TABLES:
            total = 0
            while True:
                count = await self.store.retention.prune(table, cutoff, self.batch)
                total += count
                if count < self.batch:
                    break
                await asyncio.sleep(self.pause_s)
            if total:
                RETENTION_PRUNED.labels(table=table).inc(total)
                pruned[table] = total
        if pruned:
            log.info("retention.pruned", **pruned)
            await self.reclaim()
        return pruned

    async def reclaim(self) -> int:
        """Give the freed pages back, a bounded step at a time; returns how many."""
        total = 0
        while (pages := await self.store.reclaim(RECLAIM_PAGES)) > 0:
            total += pages
            if pages < RECLAIM_PAGES:
                break
            await asyncio.sleep(self.pause_s)
        return total

    async def trim_sessions(self) -> int:
        """Bound sessions stored before the bound was set; returns the messages deleted."""
        keep = self.max_session_messages
        if keep is None:
            return 0
        deleted = 0
        while keys := await self.store.retention.oversized_sessions(keep):
            for key in keys:
                deleted += await self.store.sessions.trim(key, keep)
                await asyncio.sleep(self.pause_s)
        if deleted:
            RETENTION_PRUNED.labels(table="session_messages").inc(deleted)
            log.info("retention.sessions_trimmed", messages=deleted)
        return deleted

    async def run(self, handle: LoopHandle, every_s: float = EVERY_S) -> None:
        await self.trim_sessions()
        while True:
            try:
                await self.sweep()
            except SalonError as e:  # the store, say: the next sweep tries again
                log.warning("retention.sweep_failed", error=str(e))
            handle.healthy()
            await asyncio.sleep(every_s)


def start_retention(config: StoreConfig, store: Store, supervisor: Supervisor) -> None:
    """Bound sessions as they are written and start the janitor (if anything is bounded)."""
    store.sessions.max_messages = config.max_session_messages
    if config.retention_days is None and config.max_session_messages is None:
        return
    janitor = RetentionJanitor(
        store,
        retention_days=config.retention_days,
        max_session_messages=config.max_session_messages,
    )
    supervisor.spawn("retention", janitor.run, leader_only=True)  # one process for all
