"""What a running gateway says about itself: its loops, in the store for `salon status`."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

from salon.api.context import LoopState
from salon.matrix.source import LoopStatus
from salon.store.kv import GATEWAY_STATUS_KEY
from salon.store.records import now_ms
from salon.supervisor import LoopHandle

if TYPE_CHECKING:
    from salon.config.models import SalonConfig
    from salon.matrix.sync import ClientSyncSource
    from salon.store import Store
    from salon.supervisor import Supervisor


class StatusReports:
    """Loop health, for :class:`~salon.app.gateway.Gateway`."""

    name: str
    config: SalonConfig
    store: Store | None
    _source: ClientSyncSource | None
    _supervisor: Supervisor | None

    async def _publish_status(self, handle: LoopHandle, every_s: float = 5.0) -> None:
        """Keep the loops' state in the store, where `salon status` reads it."""
        while True:
            loops = [asdict(loop) for loop in self.loops()]
            status = {
                "gateway": self.name,
                "pid": os.getpid(),
                "updated_ms": now_ms(),
                "access": self.config.access.describe(),  # who may reach the agents
            }
            if self.store is not None:
                await self.store.kv.set(GATEWAY_STATUS_KEY, json.dumps({**status, "loops": loops}))
            handle.healthy()
            await asyncio.sleep(every_s)

    def loops(self) -> list[LoopState]:
        """Every receive loop and supervised loop, with its health."""
        loops = [
            LoopState(f"sync:{s.identity}", s.running, s.restarts, s.backing_off, s.last_error)
            for s in self.loop_status()
        ]
        if self._supervisor is not None:
            loops += [
                LoopState(h.name, h.running, h.restarts, h.backing_off, h.last_error)
                for h in self._supervisor.handles.values()
            ]
        return loops

    def loop_status(self) -> list[LoopStatus]:
        """Per-identity sync loop state."""
        return self._source.status() if self._source else []
