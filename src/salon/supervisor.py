"""Supervised background loops: a failing loop restarts with backoff, alone.

Backoff starts at ``initial_s`` and doubles up to ``max_s``, with ±20% jitter so
many loops failing together do not retry in lockstep. A loop that calls
``handle.healthy()`` resets its backoff. A ``pause`` (e.g. a homeserver's
reachability) may end the wait early: loops that failed in an outage restart as
soon as the homeserver answers again, not a minute later.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from salon.leadership import Leadership
from salon.metrics import LOOPS_RESTARTING

log = structlog.get_logger("salon.supervisor")


@dataclass(frozen=True)
class Backoff:
    """Restart delays of a supervised loop."""

    initial_s: float = 5.0
    max_s: float = 60.0
    jitter: float = 0.2

    def delay(self, failures: int) -> float:
        """The wait before restart number ``failures`` (1-based)."""
        base = min(self.initial_s * (2 ** max(failures - 1, 0)), self.max_s)
        return max(0.0, base * random.uniform(1 - self.jitter, 1 + self.jitter))


class LoopHandle:
    """What a supervised loop sees of its supervisor."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.restarts = 0
        self.failures = 0
        self.last_error: str | None = None
        self.backing_off = False
        self.running = False

    def healthy(self) -> None:
        """The loop made progress: the next failure starts the backoff afresh."""
        self.failures = 0


LoopFactory = Callable[[LoopHandle], Awaitable[None]]
# Waits out a restart delay after an error; may return early.
Pause = Callable[[float, BaseException], Awaitable[object]]


async def _sleep(delay_s: float, error: BaseException) -> None:
    await asyncio.sleep(delay_s)


class Supervisor:
    """Runs named loops as tasks and restarts each one when it fails."""

    def __init__(self, backoff: Backoff | None = None, *, pause: Pause | None = None) -> None:
        self.backoff = backoff or Backoff()
        self.pause = pause or _sleep
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.handles: dict[str, LoopHandle] = {}
        # Work done for all processes sharing the store (the cluster loop sets it).
        self.leadership = Leadership()

    def spawn(
        self,
        name: str,
        loop: LoopFactory,
        *,
        on_failure: Callable[[LoopHandle, BaseException], Awaitable[None]] | None = None,
        pause: Pause | None = None,
        leader_only: bool = False,
    ) -> LoopHandle:
        """Start ``loop`` under supervision. ``on_failure`` runs before each restart;
        ``pause`` (default: the supervisor's) waits out the backoff; ``leader_only``:
        it runs only while this process leads (see :mod:`salon.leadership`)."""
        if leader_only:
            loop = self.leadership.only(loop)
        handle = LoopHandle(name)
        self.handles[name] = handle
        self._tasks[name] = asyncio.create_task(
            self._run(handle, loop, on_failure, pause or self.pause), name=name
        )
        return handle

    async def _run(
        self,
        handle: LoopHandle,
        loop: LoopFactory,
        on_failure: Callable[[LoopHandle, BaseException], Awaitable[None]] | None,
        pause: Pause,
    ) -> None:
        while True:
            handle.running = True
            try:
                await loop(handle)
                log.info("loop.finished", loop=handle.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a loop must never take the process down
                handle.running = False
                handle.failures += 1
                handle.restarts += 1
                handle.last_error = f"{type(e).__name__}: {e}"
                wait = self.backoff.delay(handle.failures)
                log.warning(
                    "loop.failed", loop=handle.name, error=handle.last_error, retry_in_s=wait
                )
                if on_failure is not None:
                    try:
                        await on_failure(handle, e)
                    except Exception as hook_error:
                        log.warning("loop.recovery_failed", loop=handle.name, error=str(hook_error))
                handle.backing_off = True
                LOOPS_RESTARTING.inc()
                try:
                    await pause(wait, e)
                finally:
                    handle.backing_off = False
                    LOOPS_RESTARTING.dec()
            finally:
                handle.running = False

    async def cancel(self, name: str) -> None:
        """Stop one loop (and forget it)."""
        task = self._tasks.pop(name, None)
        self.handles.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every loop and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
