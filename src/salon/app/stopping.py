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
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from salon.config.models import SalonConfig
    from salon.gateway.dispatcher import Dispatcher
    from salon.turns.runner import TurnRunner

log = structlog.get_logger("salon.gateway")

__all__ = ["GracefulStop", "on_stop_signals"]


class GracefulStop:
    """The graceful half of stopping, for :class:`~salon.app.gateway.Gateway`."""

    config: SalonConfig
    _dispatcher: Dispatcher | None
    _runner: TurnRunner | None
    _stop_now: asyncio.Event

    async def stop(self) -> None:
        raise NotImplementedError

    async def shutdown(self, drain_s: float | None = None) -> int:
        """Stop gracefully: no new turns, running ones finish, then :meth:`stop`.

        The dispatcher stops handling the inbox (what arrives is still admitted and
        is handled after the next start) and the runner starts no turn any more;
        running turns get up to ``drain_s`` seconds (default ``shutdown.drain_s``)
        to finish, and :meth:`stop_now` ends that wait early. Turns still running
        then are cut off and resume on the next start. Returns how many were cut off.
        """
        drain_s = self.config.shutdown.drain_s if drain_s is None else drain_s
        cut = 0
        try:
            began = time.monotonic()
            if self._dispatcher is not None:
                self._dispatcher.pause()
                # Each room's event in hand finishes (its turn is ledgered), within the drain.
                await self._dispatcher.settle(drain_s, self._stop_now)
            runner = self._runner
            if runner is not None:
                # No more busy/online news: the agents go offline next. (A heartbeat woken
                # as its loop is cancelled could swallow the cancel on Python 3.11.)
                runner.on_slow = runner.on_idle = None
                running = len(runner.in_flight())
                log.info("gateway.draining", turns=running, drain_s=drain_s)
                left = max(drain_s - (time.monotonic() - began), 0.0)
                cut = await runner.drain(left, interrupt=self._stop_now)
                log.info(
                    "gateway.drained",
                    finished=running - cut,
                    cut_off=cut,
                    waited_s=round(time.monotonic() - began, 2),
                    stopped_at_once=self._stop_now.is_set(),
                )
        finally:
            await self.stop()
        return cut

    def stop_now(self) -> None:
        """End a graceful shutdown's wait at once: running turns are cut off (they
        resume on the next start). Before :meth:`shutdown`, it skips the wait."""
        if not self._stop_now.is_set():
            running = len(self._runner.in_flight()) if self._runner is not None else 0
            log.warning("gateway.stop_now", turns=running)
        self._stop_now.set()


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
