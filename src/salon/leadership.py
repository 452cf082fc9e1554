"""Leadership: work one gateway process does for all while several share a store.

The janitors and the agents' heartbeats run in one process at a time, the
leader (who holds the ``leader`` lease, see :mod:`salon.gateway.cluster`). A loop
wrapped by :meth:`Leadership.only` runs while this process leads and is
cancelled as soon as it does not. A lone process is its own leader.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

Loop = Callable[[Any], Awaitable[None]]


class Leadership:
    """Whether this process leads now, and loops that run only while it does."""

    def __init__(self, *, leading: bool = True) -> None:
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self.set(leading)

    @property
    def leading(self) -> bool:
        """Whether this process leads now."""
        return self._leading.is_set()

    def set(self, leading: bool) -> None:
        """Lead (True) or follow (False) from now on."""
        (self._leading if leading else self._following).set()
        (self._following if leading else self._leading).clear()

    def only(self, run: Loop) -> Loop:
        """``run`` as a loop that runs while this process leads (restarted each time
        it leads again); its errors reach the supervisor as they would unwrapped."""

        async def loop(handle: Any) -> None:
            while True:
                await self._leading.wait()
                task = asyncio.ensure_future(run(handle))
                lost = asyncio.ensure_future(self._following.wait())
                try:
                    await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lost.cancel()
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                if not task.cancelled():
                    task.result()  # an error restarts the loop under its supervisor
                    return

        return loop
