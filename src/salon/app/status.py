"""What a running gateway says about itself: its loops, in the store for `salon status`."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict

from salon.agents.mcp_hub import McpHub
from salon.api.context import LoopState
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import device_reports
from salon.matrix.source import EventSource
from salon.store import Store
from salon.store.kv import GATEWAY_STATUS_KEY
from salon.store.records import now_ms
from salon.supervisor import LoopHandle, Supervisor


def loop_states(
    source: EventSource, supervisor: Supervisor, mcp: McpHub | None = None
) -> list[LoopState]:
    """Every receive loop and supervised loop, with its health; MCP servers as
    ``mcp:<server>`` (not running while stopped, starting or restarting)."""
    loops = [
        LoopState(f"sync:{s.identity}", s.running, s.restarts, s.backing_off, s.last_error)
        for s in source.status()
    ]
    loops += [
        LoopState(h.name, h.running, h.restarts, h.backing_off, h.last_error)
        for h in supervisor.handles.values()
    ]
    for s in mcp.status() if mcp is not None else []:
        backing_off = s["state"] == "restarting"
        running = s["state"] == "ready"
        loops.append(
            LoopState(f"mcp:{s['server']}", running, s["restarts"], backing_off, s["last_error"])
        )
    return loops


def status_publisher(
    store: Store,
    gateway: str,
    loops: Callable[[], list[LoopState]],
    access: Callable[[], str],
    identities: Callable[[], Iterable[MatrixAPI]] = tuple,
    every_s: float = 5.0,
) -> Callable[[LoopHandle], Awaitable[None]]:
    """The supervised loop keeping the loops' state (and the ``identities``'
    encryption devices) in the store, where `salon status` reads it."""

    async def publish(handle: LoopHandle) -> None:
        while True:
            states = [asdict(loop) for loop in loops()]
            status = {
                "gateway": gateway,
                "pid": os.getpid(),
                "updated_ms": now_ms(),
                "access": access(),  # who may reach the agents
                "encryption": device_reports(identities()),
            }
            await store.kv.set(GATEWAY_STATUS_KEY, json.dumps({**status, "loops": states}))
            handle.healthy()
            await asyncio.sleep(every_s)

    return publish
