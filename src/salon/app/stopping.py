"""Stopping a gateway: gracefully (drain running turns, bounded) or at once.

SIGINT/SIGTERM are handled in two steps: the first starts a graceful shutdown,
a second ends its wait at once (turns cut off then resume on the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

import structlog

from salon.app.running import Pipeline

log = structlog.get_logger("salon.gateway")

__all__ = ["drain", "on_stop_signals"]


async def drain(pipeline: Pipeline, drain_s: float, stop_now: asyncio.Event) -> int:
    """The graceful half of stopping: no new turns, running ones finish.

    The dispatcher stops handling the inbox (what arrives is still admitted and is
    handled after the next start) and the runner starts no turn any more; running
    turns get up to ``drain_s`` seconds to finish, and ``stop_now`` ends that wait
    early. Returns how many turns are still running (they are cut off by the stop
    that follows, and resume on the next start).
    """
    began = time.monotonic()
    pipeline.dispatcher.pause()
    # Each room's event in hand finishes (its turn is ledgered), within the drain.
    await pipeline.dispatcher.settle(drain_s, stop_now)
    runner = pipeline.runner
    # No more busy/online news: the agents go offline next. (A heartbeat woken as
    # its loop is cancelled could swallow the cancel on Python 3.11.)
    runner.on_slow = runner.on_idle = None
    running = len(runner.in_flight())
    log.info("gateway.draining", turns=running, drain_s=drain_s)
    left = max(drain_s - (time.monotonic() - began), 0.0)
    cut = await runner.drain(left, interrupt=stop_now)
    log.info(
        "gateway.drained",
        finished=running - cut,
        cut_off=cut,
        waited_s=round(time.monotonic() - began, 2),
        stopped_at_once=stop_now.is_set(),
    )
    return cut


def on_stop_signals(stop: asyncio.Event, stop_now: Callable[[], None]) -> None:
    """Handle SIGINT/SIGTERM in two steps: the first sets ``stop`` (the caller then
    shuts the gateway down gracefully), any later one calls ``stop_now`` (typically
    :meth:`Gateway.stop_now`). Replaces the running loop's handlers of both signals."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("gateway.signal", signal=sig.name, then="drain")
            stop.set()
        else:
            log.warning("gateway.signal", signal=sig.name, then="stop_now")
            stop_now()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
