"""Appservice mode: finding events the homeserver never pushed.

Synapse keeps the events waiting behind an in-flight transaction in memory and
advances its stream position before sending them: if it stops then, they are
never pushed (Synapse issue #11637). So at start, and whenever the homeserver
answers again after an outage, each room one of our identities is joined to is
read backwards with /messages (as that identity) down to the room's mark, and
what is found is admitted like a transaction's events (the inbox ignores the
events it holds). The walk is :class:`~salon.matrix.gaps.GapFiller`'s, as for a
``limited`` sync timeline.

The mark is the newest event pushed in a room, kept under one key (the router's
user id). While a catch-up is due or running, transactions do not move the marks
(they are kept aside and written after it): a transaction arriving after the
outage must not carry a mark past the events that were lost before it (a room with
no mark yet takes the first one pushed at once). A room without a mark gets its
newest event as its mark, nothing admitted (as a first sync has no gap). A room
whose newest event is its mark costs one request. The gateway may have each room
wait its turn (:attr:`CatchUp.door`), behind its replies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from salon._exceptions import MatrixError
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import RoomTimeline, parse_event
from salon.matrix.gaps import GapFiller, Mark
from salon.matrix.source import EventSink, PositionStore
from salon.metrics import CATCHUP_ROOMS

log = structlog.get_logger("salon.matrix.catchup")


def newest_marks(raw_events: Iterable[object]) -> dict[str, Mark]:
    """Room id → the newest (by origin_server_ts) event among ``raw_events``."""
    marks: dict[str, Mark] = {}
    for raw in raw_events:
        if not isinstance(raw, dict):
            continue
        room_id, event_id, ts = raw.get("room_id"), raw.get("event_id"), raw.get("origin_server_ts")
        if not (isinstance(room_id, str) and isinstance(event_id, str) and isinstance(ts, int)):
            continue
        if room_id not in marks or ts >= marks[room_id][1]:
            marks[room_id] = (event_id, ts)
    return marks


class CatchUp:
    """Marks of the pushed events, and the walk that fills what was not pushed.

    ``key``: the user id the marks are stored under; ``parallel``: rooms read at once.
    """

    def __init__(
        self,
        positions: PositionStore,
        key: UserId,
        *,
        gaps: GapFiller | None = None,
        parallel: int = 4,
    ) -> None:
        self._positions = positions
        self._key = key
        self._gaps = gaps or GapFiller()
        self._parallel = parallel
        self._held = True  # a catch-up is due at start
        self._marked: set[str] | None = None  # rooms with a stored mark (once asked)
        self._first: dict[str, Mark] = {}  # first marks written while held
        self._aside: dict[str, Mark] = {}
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._pending = False  # a catch-up is booked for later: keep the marks aside
        self.runs = 0  # finished catch-ups
        # Awaited before each room is read: the gateway paces the reads behind its
        # replies (after a restart they queued ahead of them in the homeserver).
        self.door: Callable[[], Awaitable[None]] | None = None

    @property
    def due(self) -> bool:
        """A catch-up is due or running: transactions' marks are kept aside."""
        return self._held

    def hold(self, *, until_next: bool = False) -> None:
        """The homeserver may have lost events (it is down): keep marks aside until
        the next catch-up has run. ``until_next``: one is booked to start later, so a
        run that is under way now does not end the hold."""
        self._held = True
        if until_next:
            self._pending = True

    async def pushed(self, raw_events: Sequence[object]) -> None:
        """A transaction's events were admitted: move the marks (or keep them aside)."""
        marks = newest_marks(raw_events)
        if not marks:
            return
        if self._held:
            for room_id, mark in marks.items():
                if room_id not in self._aside or mark[1] >= self._aside[room_id][1]:
                    self._aside[room_id] = mark
            # A room with no mark yet gets this one now: a catch-up would only mark it
            # at its newest event, and one that has not run yet (it waits behind the
            # replies) must not leave it unmarked if the gateway stops first.
            if self._marked is None:
                self._marked = set((await self._positions.room_marks(self._key)).keys())
            first = {r: m for r, m in marks.items() if r not in self._marked}
            if first:
                await self._positions.advance(self._key, None, first, {})
                self._marked |= first.keys()
                self._first.update(first)  # a run that read the marks before sees them
            return
        await self._positions.advance(self._key, None, marks, {})

    def start(self, rooms: Mapping[RoomId, MatrixAPI], sink: EventSink) -> None:
        """Run a catch-up in the background (again after the current one, if one runs)."""
        self._held = True
        self._pending = False
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._runs(dict(rooms), sink), name="appservice-catchup")

    async def stop(self) -> None:
        """Cancel a running catch-up (its marks stay where they were)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _runs(self, rooms: dict[RoomId, MatrixAPI], sink: EventSink) -> None:
        while True:
            self._again = False
            try:
                await self.run(rooms, sink)
            except Exception as e:  # a background task: never lost silently
                log.warning("appservice.catchup_failed", error=f"{type(e).__name__}: {e}")
            if not self._again:
                return

    async def run(self, rooms: Mapping[RoomId, MatrixAPI], sink: EventSink) -> None:
        """Catch up every room in ``rooms`` (read as the identity given for it), then
        write the marks kept aside, but not those of a room that could not be read."""
        self._held = True
        stored = await self._positions.room_marks(self._key)
        limit = asyncio.Semaphore(self._parallel)

        async def one(room_id: RoomId, api: MatrixAPI) -> tuple[RoomId, Mark | None, bool]:
            if self.door is not None:
                await self.door()
            async with limit:
                try:
                    mark = stored.get(room_id) or self._first.get(room_id)
                    mark = await self._room(api, room_id, mark, sink)
                    return room_id, mark, True
                except MatrixError as e:
                    CATCHUP_ROOMS.labels(outcome="failed").inc()
                    log.warning("appservice.catchup_room_failed", room_id=room_id, error=str(e))
                    return room_id, None, False

        results = await asyncio.gather(*(one(r, api) for r, api in rooms.items()))
        failed = {room_id for room_id, _, ok in results if not ok}
        marks: dict[str, Mark] = {r: mark for r, mark, _ in results if mark is not None}
        aside, self._aside = self._aside, {}
        if self._again or self._pending:  # another one is due: it writes them
            self._aside = aside
        else:
            self._held = False
            for room_id, mark in aside.items():
                if room_id not in failed and (room_id not in marks or mark[1] >= marks[room_id][1]):
                    marks[room_id] = mark
        if marks:
            await self._positions.advance(self._key, None, marks, {})
            if self._marked is not None:
                self._marked |= marks.keys()
        self.runs += 1
        log.info("appservice.caught_up", rooms=len(rooms), failed=len(failed))

    async def _room(
        self, api: MatrixAPI, room_id: RoomId, mark: Mark | None, sink: EventSink
    ) -> Mark | None:
        """Admit what is missing in one room; its newest event (the new mark)."""
        data = await api.messages(room_id, limit=1, direction="b")
        chunk: list[Any] = data.get("chunk") or []
        newest = [e for r in chunk if (e := parse_event(r, room_id, api.user_id))]
        if not newest:
            return None  # an empty (or unreadable) room: nothing to compare
        latest = newest[0]
        if mark is None:
            CATCHUP_ROOMS.labels(outcome="marked").inc()
            return latest.event_id, latest.origin_ts
        if latest.event_id == mark[0]:
            CATCHUP_ROOMS.labels(outcome="current").inc()
            return None
        end = data.get("end")
        timeline = RoomTimeline(room_id, newest, [], limited=isinstance(end, str), prev_batch=end)
        plan = self._gaps.plan(api.user_id, timeline, mark, None, initial=False)
        if plan.gap:
            async for page in self._gaps.fill(api, plan):
                await sink.admit(api.user_id, page)
        if events := plan.timeline():
            await sink.admit(api.user_id, events)
        CATCHUP_ROOMS.labels(outcome="walked").inc()
        return plan.mark
