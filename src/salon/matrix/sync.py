"""Client-mode event source: one supervised /sync loop per identity.

A batch is admitted in steps: first the rooms without a gap (nothing to wait
for), then each gap a page at a time, oldest first (see :mod:`salon.matrix.gaps`),
with the room's mark recorded after each page so a restart resumes there. The
sync token is recorded only once everything before it was admitted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from salon._exceptions import MatrixError, UnknownTokenError
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import DeviceCrypto
from salon.matrix.delivery import pause
from salon.matrix.events import InboundEvent, Invite, parse_sync_batch
from salon.matrix.gaps import GapFiller, Mark
from salon.matrix.source import EventSink, LoopStatus, PositionStore
from salon.metrics import EVENTS_DROPPED, SYNC_LAG, SYNC_RESTARTS
from salon.supervisor import Backoff, LoopHandle, Supervisor


# Inline filter: no presence or account data; everything else in rooms, since
# reactions, edits and custom events all matter to the gateway.
def sync_filter(timeline_limit: int = 100) -> str:
    """The inline /sync filter, with at most ``timeline_limit`` events a room."""
    return json.dumps(
        {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "ephemeral": {"types": []},
                "account_data": {"types": []},
                "state": {"lazy_load_members": True},
                "timeline": {"limit": timeline_limit},
            },
        },
        separators=(",", ":"),
    )


SYNC_FILTER = sync_filter()

Reauth = Callable[[MatrixAPI], Awaitable[None]]

log = structlog.get_logger("salon.sync")


@dataclass(frozen=True)
class SyncSettings:
    """The knobs of the /sync loops: the long-poll timeout, the random pause before an
    identity's first sync, events a room per /sync, and the gap backfill's page size
    and how many pages it caches."""

    timeout_ms: int = 30000
    startup_jitter_s: float = 2.0
    timeline_limit: int = 100
    page_size: int = 100
    cached_pages: int = 20


class ClientSyncSource:
    """Feeds an :class:`EventSink` from ``/sync``, one loop per identity."""

    def __init__(
        self,
        apis: Sequence[MatrixAPI],
        positions: PositionStore,
        *,
        settings: SyncSettings | None = None,
        backoff: Backoff | None = None,
        reauth: Reauth | None = None,
    ) -> None:
        settings = settings or SyncSettings()
        self._apis = {api.user_id: api for api in apis}
        self._positions = positions
        self._timeout_ms = settings.timeout_ms
        self._jitter_s = settings.startup_jitter_s
        self._reauth = reauth
        self._gaps = GapFiller(page_size=settings.page_size, cached_pages=settings.cached_pages)
        self._filter = sync_filter(settings.timeline_limit)
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
            # An outage is waited out only until the homeserver answers again.
            pause=lambda delay, error, api=api: pause(api, delay, error),  # type: ignore[misc]
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
            data = await api.sync(since, timeout_ms=timeout, filter_id=self._filter)
            crypto = getattr(api, "crypto", None)  # stand-ins in tests may lack it
            if isinstance(crypto, DeviceCrypto):
                # Room keys first: events of this batch (or kept from before) may need them.
                await self._admit(sink, api, await crypto.process_sync(data))
            batch = parse_sync_batch(data, api.user_id)
            plans = [
                self._gaps.plan(
                    api.user_id,
                    room,
                    marks.get(room.room_id),
                    joins.get(room.room_id),
                    since is None,
                )
                for room in batch.rooms
            ]
            # Rooms without a gap first: a long gap elsewhere does not hold them up.
            await self._admit(sink, api, [e for p in plans if not p.gap for e in p.timeline()])
            for plan in (p for p in plans if p.gap):
                async for page in self._gaps.fill(api, plan):
                    await self._admit(sink, api, page)
                    # A restart resumes the gap from here (the token is not stored yet).
                    mark: dict[str, Mark] = {
                        plan.room.room_id: (page[-1].event_id, page[-1].origin_ts)
                    }
                    await self._positions.advance(api.user_id, None, mark, {})
                await self._admit(sink, api, plan.timeline())
            new_marks: dict[str, Mark] = {p.room.room_id: p.mark for p in plans if p.mark}
            new_joins: dict[str, int] = {
                p.room.room_id: p.joined_at for p in plans if p.joined_at is not None
            }
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
    async def _admit(sink: EventSink, api: MatrixAPI, events: list[InboundEvent]) -> None:
        crypto = getattr(api, "crypto", None)
        if events and isinstance(crypto, DeviceCrypto):
            events = await crypto.decrypt(events)
        if events:
            await sink.admit(api.user_id, events)
            newest = max(e.origin_ts for e in events)
            SYNC_LAG.labels(identity=api.user_id).set(max(time.time() - newest / 1000, 0))

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
