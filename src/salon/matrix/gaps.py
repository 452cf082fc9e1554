"""Filling a ``limited`` sync timeline with /messages, however long the gap.

A gap is walked back page by page from the timeline to the room's mark (the
newest event delivered before), the identity's own join, or the room's start.
Then the pages are handed over oldest first, one at a time, so the caller
admits each before the next is read: the room's order holds, and neither memory
nor any one step grows with the gap. The first ``cached_pages`` pages of the
walk are kept; older ones are read a second time from their tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from salon._exceptions import MatrixError, UnknownTokenError, is_transient
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent, RoomTimeline, own_join_ts, parse_event
from salon.metrics import EVENTS_DROPPED, SYNC_BACKFILL_PAGES, SYNC_BACKFILLED

Mark = tuple[str, int]  # (event id, origin_server_ts) of the newest event delivered in a room

log = structlog.get_logger("salon.sync")


@dataclass
class RoomPlan:
    """One room's share of a sync batch: the timeline to deliver and, when the
    timeline is ``limited`` with a gap, the gap to fill before it."""

    room: RoomTimeline
    mark: Mark | None  # the room's newest event in this batch
    joined_at: int | None  # the identity's own (newest) join seen in this batch
    cutoff: int | None  # nothing older than the identity's join is delivered
    gap: bool  # older events are to be fetched (and delivered) before the timeline
    previous_mark: Mark | None  # where the gap ends

    def timeline(self) -> list[InboundEvent]:
        """The timeline events to deliver (after the gap, if any), oldest first."""
        return self.keep(self.room.events)

    def keep(self, events: list[InboundEvent]) -> list[InboundEvent]:
        """``events`` without those from before the identity's join (counted)."""
        kept = [e for e in events if self.cutoff is None or e.origin_ts >= self.cutoff]
        if dropped := len(events) - len(kept):
            EVENTS_DROPPED.labels(reason="before_join").inc(dropped)
            log.debug("sync.before_join", room_id=self.room.room_id, dropped=dropped)
        return kept


@dataclass
class _Page:
    token: str  # the /messages ``from`` token it was read with
    take: int  # how many of its events (newest first) belong to the gap
    raw: list[Any] | None  # those events, if kept from the walk


class GapFiller:
    """Plans each room of a batch and fills the gaps, ``page_size`` events a request."""

    def __init__(self, *, page_size: int = 100, cached_pages: int = 20) -> None:
        self.page_size = page_size
        self.cached_pages = cached_pages

    def plan(
        self,
        me: UserId,
        room: RoomTimeline,
        mark: Mark | None,
        joined_at: int | None,
        initial: bool,
    ) -> RoomPlan:
        """``initial``: the first sync ever has no gap to fill, only history."""
        join = _latest(*(own_join_ts(e, me) for e in (*room.own_members, *room.events)))
        no_gap = any(
            own_join_ts(e, me) is not None or (mark is not None and e.event_id == mark[0])
            for e in room.events
        )
        newest = room.events[-1] if room.events else None
        return RoomPlan(
            room=room,
            mark=(newest.event_id, newest.origin_ts) if newest else None,
            joined_at=join,
            cutoff=_latest(joined_at, join),
            gap=room.limited and not initial and not no_gap,
            previous_mark=mark,
        )

    async def fill(self, api: MatrixAPI, plan: RoomPlan) -> AsyncIterator[list[InboundEvent]]:
        """The gap's events, a page at a time, oldest page first. A transient error
        (or a revoked token) is raised: the loop restarts and replays the batch."""
        pages, joined = await self._walk(api, plan)
        plan.joined_at = _latest(plan.joined_at, joined)
        plan.cutoff = _latest(plan.cutoff, joined)
        total = 0
        for page in reversed(pages):
            raw = page.raw
            if raw is None:
                data = await self._read(api, plan.room, page.token)
                if data is None:
                    return  # refused now: what was delivered stays delivered
                raw = (data.get("chunk") or [])[: page.take]
            events = [
                e for r in reversed(raw) if (e := parse_event(r, plan.room.room_id, api.user_id))
            ]
            events = plan.keep(events)
            if events:
                total += len(events)
                SYNC_BACKFILLED.inc(len(events))
                yield events
        if total:
            log.info(
                "sync.backfilled",
                identity=api.user_id,
                room_id=plan.room.room_id,
                events=total,
                pages=len(pages),
            )

    async def _walk(self, api: MatrixAPI, plan: RoomPlan) -> tuple[list[_Page], int | None]:
        """Page back to the end of the gap; the pages (newest first) and the
        identity's own join if the walk reached it."""
        me, room, mark = api.user_id, plan.room, plan.previous_mark
        pages: list[_Page] = []
        token, joined = room.prev_batch, None
        if token is None:
            log.warning("sync.gap_without_prev_batch", identity=me, room_id=room.room_id)
        while token is not None:
            data = await self._read(api, room, token)
            if data is None:
                break  # refused: deliver what the walk found
            chunk = data.get("chunk") or []
            take, done = len(chunk), False
            for i, raw in enumerate(chunk):  # newest first
                event = parse_event(raw, room.room_id, me)
                if event is None:
                    continue
                if mark is not None and (event.event_id == mark[0] or event.origin_ts < mark[1]):
                    take, done = i, True  # reached what was delivered before
                elif plan.cutoff is not None and event.origin_ts < plan.cutoff:
                    take, done = i, True  # reached history from before the join
                elif (joined := own_join_ts(event, me)) is not None:
                    take, done = i + 1, True  # the join itself is delivered
                if done:
                    break
            keep = len(pages) < self.cached_pages
            pages.append(_Page(token, take, chunk[:take] if keep else None))
            end = data.get("end")
            # No ``end`` (or an empty page): the room's start.
            token = end if isinstance(end, str) and chunk and not done else None
        return pages, joined

    async def _read(self, api: MatrixAPI, room: RoomTimeline, token: str) -> dict[str, Any] | None:
        """One page back from ``token``; None if the homeserver refuses it."""
        SYNC_BACKFILL_PAGES.inc()
        try:
            return await api.messages(
                room.room_id, limit=self.page_size, direction="b", since=token
            )
        except MatrixError as e:
            if is_transient(e) or isinstance(e, UnknownTokenError):
                raise  # the loop restarts (logging in again) and replays the batch
            log.warning(
                "sync.backfill_refused", identity=api.user_id, room_id=room.room_id, error=str(e)
            )
            return None


def _latest(*stamps: int | None) -> int | None:
    return max((t for t in stamps if t is not None), default=None)
