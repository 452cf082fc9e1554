"""Client-mode event source: one supervised /sync loop per identity."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from salon._exceptions import MatrixError, UnknownTokenError, is_transient
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import (
    InboundEvent,
    Invite,
    RoomTimeline,
    own_join_ts,
    parse_event,
    parse_sync_batch,
)
from salon.matrix.source import EventSink, LoopStatus, PositionStore
from salon.metrics import (
    EVENTS_DROPPED,
    SYNC_BACKFILL_CAPPED,
    SYNC_BACKFILLED,
    SYNC_LAG,
    SYNC_RESTARTS,
)
from salon.supervisor import Backoff, LoopHandle, Supervisor

# Inline filter: no presence or account data; everything else in rooms, since
# reactions, edits and custom events all matter to the gateway.
SYNC_FILTER = json.dumps(
    {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "ephemeral": {"types": []},
            "account_data": {"types": []},
            "state": {"lazy_load_members": True},
            "timeline": {"limit": 100},
        },
    },
    separators=(",", ":"),
)

Reauth = Callable[[MatrixAPI], Awaitable[None]]
Mark = tuple[str, int]  # (event id, origin_server_ts) of the newest event delivered in a room

log = structlog.get_logger("salon.sync")


@dataclass(frozen=True)
class CaughtUp:
    """One room's share of a sync batch, gaps filled and pre-join history dropped."""

    events: list[InboundEvent]  # to deliver, oldest first
    mark: Mark | None  # the room's newest event in this batch
    joined_at: int | None  # the identity's own (newest) join seen in this batch


class GapFiller:
    """Backfills a ``limited`` timeline with /messages down to the room's mark, or the
    identity's own join, at most ``max_pages`` pages; drops events from before the join."""

    def __init__(self, *, max_pages: int = 20, page_size: int = 100) -> None:
        self.max_pages = max_pages
        self.page_size = page_size

    async def catch_up(
        self,
        api: MatrixAPI,
        room: RoomTimeline,
        mark: Mark | None,
        joined_at: int | None,
        initial: bool,
    ) -> CaughtUp:
        """``initial``: the first sync ever has no gap to fill, only history."""
        me = api.user_id
        join = _latest(*(own_join_ts(e, me) for e in (*room.own_members, *room.events)))
        older: list[InboundEvent] = []
        no_gap = any(
            own_join_ts(e, me) is not None or (mark is not None and e.event_id == mark[0])
            for e in room.events
        )
        if room.limited and not initial and not no_gap:
            older, page_join = await self._backfill(api, room, mark, _latest(joined_at, join))
            join = _latest(join, page_join)
        cutoff = _latest(joined_at, join)
        candidates = [*older, *room.events]
        events = [e for e in candidates if cutoff is None or e.origin_ts >= cutoff]
        if dropped := len(candidates) - len(events):
            EVENTS_DROPPED.labels(reason="before_join").inc(dropped)
            log.debug("sync.before_join", identity=me, room_id=room.room_id, dropped=dropped)
        newest = room.events[-1] if room.events else None
        return CaughtUp(events, (newest.event_id, newest.origin_ts) if newest else None, join)

    async def _backfill(
        self, api: MatrixAPI, room: RoomTimeline, mark: Mark | None, cutoff: int | None
    ) -> tuple[list[InboundEvent], int | None]:
        """Events before the timeline and after the mark, oldest first; and the
        identity's own join if the pages reached it."""
        me, found, joined = api.user_id, list[InboundEvent](), None
        token, pages, done = room.prev_batch, 0, False
        while token is not None and not done and pages < self.max_pages:
            try:
                page = await api.messages(
                    room.room_id, limit=self.page_size, direction="b", since=token
                )
            except MatrixError as e:
                if is_transient(e) or isinstance(e, UnknownTokenError):
                    raise  # the loop restarts (logging in again) and replays the batch
                log.warning(
                    "sync.backfill_refused", identity=me, room_id=room.room_id, error=str(e)
                )
                return found[::-1], None
            pages += 1
            chunk = page.get("chunk") or []
            for raw in chunk:  # newest first
                event = parse_event(raw, room.room_id, me)
                if event is None:
                    continue
                if mark is not None and (event.event_id == mark[0] or event.origin_ts < mark[1]):
                    done = True  # reached what was delivered before
                elif cutoff is not None and event.origin_ts < cutoff:
                    done = True  # reached history from before the join
                else:
                    found.append(event)
                    joined = own_join_ts(event, me)
                    done = joined is not None
                if done:
                    break
            end = page.get("end")
            token = end if isinstance(end, str) and chunk else None  # None: the room's start
        if room.prev_batch is None:
            log.warning("sync.gap_without_prev_batch", identity=me, room_id=room.room_id)
        elif not done and token is not None:
            SYNC_BACKFILL_CAPPED.inc()
            log.warning("sync.backfill_capped", identity=me, room_id=room.room_id, pages=pages)
        if found:
            SYNC_BACKFILLED.inc(len(found))
            log.info("sync.backfilled", identity=me, room_id=room.room_id, events=len(found))
        return found[::-1], joined


def _latest(*stamps: int | None) -> int | None:
    return max((t for t in stamps if t is not None), default=None)


class ClientSyncSource:
    """Feeds an :class:`EventSink` from ``/sync``, one loop per identity."""

    def __init__(
        self,
        apis: Sequence[MatrixAPI],
        positions: PositionStore,
        *,
        timeout_ms: int = 30000,
        startup_jitter_s: float = 2.0,
        backoff: Backoff | None = None,
        reauth: Reauth | None = None,
        backfill_pages: int = 20,
        page_size: int = 100,
    ) -> None:
        self._apis = {api.user_id: api for api in apis}
        self._positions = positions
        self._timeout_ms = timeout_ms
        self._jitter_s = startup_jitter_s
        self._reauth = reauth
        self._gaps = GapFiller(max_pages=backfill_pages, page_size=page_size)
        self._sink: EventSink | None = None
        self._supervisor = Supervisor(backoff)
        self._ready: dict[UserId, asyncio.Event] = {u: asyncio.Event() for u in self._apis}

    async def start(self, sink: EventSink) -> None:
        """Start one supervised sync loop per identity."""
        self._sink = sink
        for api in self._apis.values():
            self._spawn(api, sink)

    def _spawn(self, api: MatrixAPI, sink: EventSink) -> None:
        self._supervisor.spawn(
            f"sync:{api.user_id}",
            lambda handle, api=api: self._loop(handle, api, sink),  # type: ignore[misc]
            on_failure=lambda handle, error, api=api: self._on_failure(api, error),  # type: ignore[misc]
        )

    async def add(self, api: MatrixAPI, timeout: float) -> None:
        """Start syncing one more identity (an agent added while running); returns once
        it has synced once."""
        if self._sink is None:
            raise RuntimeError("the source is not started")
        self._apis[api.user_id] = api
        self._ready[api.user_id] = asyncio.Event()
        self._spawn(api, self._sink)
        await asyncio.wait_for(self._ready[api.user_id].wait(), timeout)

    async def remove(self, user_id: UserId) -> None:
        """Stop syncing an identity (an agent removed while running)."""
        await self._supervisor.cancel(f"sync:{user_id}")
        self._apis.pop(user_id, None)
        self._ready.pop(user_id, None)

    async def wait_ready(self, timeout: float) -> None:
        """Wait until every identity completed one sync."""
        await asyncio.wait_for(
            asyncio.gather(*(event.wait() for event in self._ready.values())), timeout
        )

    async def stop(self) -> None:
        """Stop all loops."""
        await self._supervisor.stop()

    def status(self) -> list[LoopStatus]:
        """Per-identity loop state."""
        result = []
        for user_id in self._apis:
            handle = self._supervisor.handles.get(f"sync:{user_id}")
            if handle is None:
                continue
            result.append(
                LoopStatus(
                    identity=user_id,
                    running=handle.running,
                    restarts=handle.restarts,
                    last_error=handle.last_error,
                    backing_off=handle.backing_off,
                )
            )
        return result

    async def _on_failure(self, api: MatrixAPI, error: BaseException) -> None:
        SYNC_RESTARTS.labels(identity=api.user_id).inc()
        if isinstance(error, UnknownTokenError) and self._reauth is not None:
            await self._reauth(api)

    async def _loop(self, handle: LoopHandle, api: MatrixAPI, sink: EventSink) -> None:
        loop_log = structlog.get_logger(f"salon.sync.{api.user_id}")
        if handle.restarts == 0 and self._jitter_s > 0:
            # Many gateways starting at once should not hit the homeserver in one instant.
            await asyncio.sleep(random.uniform(0, self._jitter_s))
        since = await self._positions.get_sync_token(api.user_id)
        # A cache of the durable per-room position, reloaded whenever the loop restarts.
        marks = dict(await self._positions.room_marks(api.user_id))
        joins = dict(await self._positions.room_joins(api.user_id))
        loop_log.debug("sync.start", since=since)
        while True:
            # The first request of a run returns at once so readiness is quick.
            timeout = self._timeout_ms if self._ready[api.user_id].is_set() else 0
            data = await api.sync(since, timeout_ms=timeout, filter_id=SYNC_FILTER)
            batch = parse_sync_batch(data, api.user_id)
            events: list[InboundEvent] = []
            new_marks: dict[str, tuple[str, int]] = {}
            new_joins: dict[str, int] = {}
            for room in batch.rooms:
                caught = await self._gaps.catch_up(
                    api, room, marks.get(room.room_id), joins.get(room.room_id), since is None
                )
                events += caught.events
                if caught.mark is not None:
                    new_marks[room.room_id] = caught.mark
                if caught.joined_at is not None:
                    new_joins[room.room_id] = caught.joined_at
            if events:
                await sink.admit(api.user_id, events)
                newest = max(e.origin_ts for e in events)
                SYNC_LAG.labels(identity=api.user_id).set(max(time.time() - newest / 1000, 0))
            for invite in batch.invites:
                await self._invited(sink, invite)
            token = batch.next_batch if batch.next_batch not in (None, since) else None
            if token is not None or new_marks or new_joins:
                await self._positions.advance(api.user_id, token, new_marks, new_joins)
            marks.update(new_marks)
            for room_id, joined_at in new_joins.items():
                joins[room_id] = max(joined_at, joins.get(room_id, joined_at))
            since = token or since
            self._ready[api.user_id].set()
            handle.healthy()

    @staticmethod
    async def _invited(sink: EventSink, invite: Invite) -> None:
        # The token must advance whatever the homeserver says about the invitation:
        # a join that keeps failing would otherwise replay this batch forever.
        try:
            await sink.invited(invite)
        except MatrixError as e:
            EVENTS_DROPPED.labels(reason="invite_failed").inc()
            log.warning(
                "sync.invite_failed", identity=invite.invited, room_id=invite.room_id, error=str(e)
            )
