"""Client-mode event source: one supervised /sync loop per identity."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Sequence

import structlog

from salon._exceptions import UnknownTokenError
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import parse_sync
from salon.matrix.source import EventSink, LoopStatus, PositionStore
from salon.metrics import SYNC_RESTARTS
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
    ) -> None:
        self._apis = {api.user_id: api for api in apis}
        self._positions = positions
        self._timeout_ms = timeout_ms
        self._jitter_s = startup_jitter_s
        self._reauth = reauth
        self._supervisor = Supervisor(backoff)
        self._ready: dict[UserId, asyncio.Event] = {u: asyncio.Event() for u in self._apis}

    async def start(self, sink: EventSink) -> None:
        """Start one supervised sync loop per identity."""
        for user_id, api in self._apis.items():
            self._supervisor.spawn(
                f"sync:{user_id}",
                lambda handle, api=api: self._loop(handle, api, sink),  # type: ignore[misc]
                on_failure=lambda handle, error, api=api: self._on_failure(api, error),  # type: ignore[misc]
            )

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
        log = structlog.get_logger(f"salon.sync.{api.user_id}")
        if handle.restarts == 0 and self._jitter_s > 0:
            # Many gateways starting at once should not hit the homeserver in one instant.
            await asyncio.sleep(random.uniform(0, self._jitter_s))
        since = await self._positions.get_sync_token(api.user_id)
        log.debug("sync.start", since=since)
        while True:
            # The first request of a run returns at once so readiness is quick.
            timeout = self._timeout_ms if self._ready[api.user_id].is_set() else 0
            data = await api.sync(since, timeout_ms=timeout, filter_id=SYNC_FILTER)
            events, invites = parse_sync(data, api.user_id)
            if events:
                await sink.admit(api.user_id, events)
            for invite in invites:
                await sink.invited(invite)
            next_batch = data.get("next_batch")
            if isinstance(next_batch, str) and next_batch != since:
                await self._positions.set_sync_token(api.user_id, next_batch)
                since = next_batch
            self._ready[api.user_id].set()
            handle.healthy()
