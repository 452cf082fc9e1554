"""Rooms side by side: each room's inbox events in order, in a lane of its own.

The dispatcher reads pending inbox rows and offers them here. Each room with work
has one task (its lane) handling its rows one after another; lanes run in
parallel, at most ``max_rooms`` handling a row at a time (taken per row, in
arrival order, so a busy room cannot keep the others out). The inbox stays the
only record: a row is marked by its handler, and a row a lane did not get to
(paused, cancelled, or behind an event deferred for a retry) is simply left
pending and read again later.

A row read from the inbox may already be in a lane (or just finished by one), so
rows are remembered from the time they are offered until a read that began
after they were let go — no stale read hands a row out twice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from salon.store.records import InboxRow

log = structlog.get_logger("salon.gateway.dispatcher")

# Handles one row; False when it was deferred (the room's later events wait for it).
HandleRow = Callable[[InboxRow], Awaitable[bool]]


class Lanes:
    """One task per room with pending work, bounded by a semaphore over rooms."""

    def __init__(
        self,
        handle: HandleRow,
        *,
        max_rooms: int,
        paused: Callable[[], bool],
        on_free: Callable[[], None],
    ) -> None:
        self._handle = handle
        self._paused = paused
        self._on_free = on_free  # a lane ended: its room may have more to read
        self._slots = asyncio.Semaphore(max_rooms)
        self._queues: dict[str, deque[InboxRow]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._taken: set[str] = set()  # event ids offered and not yet known to be let go
        self._let_go: set[str] = set()  # of those, handled or left pending since
        self.failure: BaseException | None = None  # a lane's store error, for the reader

    # --- reading ---------------------------------------------------------------------

    def before_read(self) -> frozenset[str]:
        """Call before reading the inbox: rows let go by now may be offered again."""
        return frozenset(self._let_go)

    def in_hand(self, fresh: frozenset[str]) -> frozenset[str]:
        """The rows :meth:`offer` would turn away in the read ``fresh`` began: a read
        need not return them."""
        return frozenset(self._taken - fresh)

    def offer(self, row: InboxRow, fresh: frozenset[str]) -> bool:
        """Queue ``row`` in its room's lane unless it is there already; ``fresh``: what
        :meth:`before_read` returned for the read that found the row."""
        event_id = row.item.event_id
        if event_id in self._taken and event_id not in fresh:
            return False
        self._let_go.discard(event_id)
        self._taken.add(event_id)
        room = row.item.room_id
        self._queues.setdefault(room, deque()).append(row)
        if room not in self._tasks:
            self._tasks[room] = asyncio.create_task(self._lane(room), name=f"room:{room}")
        return True

    def after_read(self, fresh: frozenset[str]) -> None:
        """Call after offering a read's rows: what was let go before it is forgotten."""
        gone = fresh & self._let_go
        self._let_go -= gone
        self._taken -= gone

    # --- lanes --------------------------------------------------------------------------

    async def _lane(self, room: str) -> None:
        queue = self._queues[room]
        try:
            while queue and not self._paused():
                row = queue[0]
                async with self._slots:
                    if self._paused():
                        break
                    settled = await self._handle(row)
                queue.popleft()
                self._let_go.add(row.item.event_id)
                if not settled:
                    break  # deferred: the room's later events wait for it in the inbox
        except Exception as e:  # the store failing: the reader restarts the worker
            log.warning("inbox.lane_failed", room_id=room, error=repr(e))
            self.failure = e
        finally:
            for row in queue:  # left pending, read again later
                self._let_go.add(row.item.event_id)
            del self._queues[room]
            del self._tasks[room]
            self._on_free()

    @property
    def rooms(self) -> int:
        """Rooms with a lane now (handling a row or waiting for a turn to)."""
        return len(self._tasks)

    async def idle(
        self, timeout_s: float | None = None, interrupt: asyncio.Event | None = None
    ) -> bool:
        """Wait until no lane runs (after a pause each ends after its current row), or
        ``interrupt`` is set; True if none is left."""
        waits: set[asyncio.Future[Any]] = set(self._tasks.values())
        if not waits:
            return True
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        stop = asyncio.ensure_future(interrupt.wait()) if interrupt is not None else None
        try:
            while self._tasks and not (interrupt is not None and interrupt.is_set()):
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    break
                waits = {*self._tasks.values(), *([stop] if stop is not None else [])}
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stop is not None:
                stop.cancel()
        return not self._tasks

    async def close(self) -> None:
        """Cancel every lane; the rows they held stay pending in the inbox."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
