"""Fire-and-forget tasks whose exceptions are always retrieved and logged.

``asyncio.create_task`` alone loses a task that nobody awaits (it may be garbage
collected mid-flight) and hides its exception until the loop closes; everything
Salon runs in the background goes through :func:`spawn` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("salon.tasks")

_RUNNING: set[asyncio.Task[Any]] = set()


def _done(task: asyncio.Task[Any]) -> None:
    _RUNNING.discard(task)
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.warning("task.failed", task=task.get_name(), error=f"{type(error).__name__}: {error}")


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Run ``coro`` in the background; a failure is logged, never lost."""
    task = asyncio.create_task(coro, name=name)
    _RUNNING.add(task)
    task.add_done_callback(_done)
    return task
