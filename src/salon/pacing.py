"""Background homeserver work, paced behind the replies.

After a restart every agent has a first heartbeat to send and every room a catch-up
read to make: sent all at once they queue in the homeserver ahead of the replies to
the messages that waited for the gateway (a state event costs it more than a
message). A :class:`Backstage` lets such work through one item at a time, at a
bounded rate, after a short grace, and not while replies are being made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

POLL_S = 0.1
"""How often a deferred item looks whether the replies are done."""


class Backstage:
    """The door background work goes through (:meth:`turn`), one item at a time.

    ``busy``: whether replies are in the making now (turns running): an item waits
    while they are, but no longer than ``max_defer_s`` from its arrival (it is due
    after all).
    ``rate_per_s``: items let through per second at most. ``grace_s``: none goes
    through that soon after this was made (what waited for the start comes first).
    """

    def __init__(
        self,
        busy: Callable[[], bool],
        *,
        rate_per_s: float,
        max_defer_s: float,
        grace_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._busy = busy
        self._gap_s = 1.0 / rate_per_s
        self._max_defer_s = max_defer_s
        self._clock = clock
        self._next = clock() + grace_s
        self._lock = asyncio.Lock()  # FIFO: items go through in the order they came
        self.passed = 0  # items let through
        self.deferred = 0  # of them, those that waited for the replies

    async def turn(self) -> None:
        """Return when this item may go (its homeserver request follows at once)."""
        # From its arrival: under steady load the items queued behind it would
        # otherwise each wait the whole bound in turn.
        deadline = self._clock() + self._max_defer_s
        async with self._lock:
            wait = self._next - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            waited = False
            while self._busy() and self._clock() < deadline:
                waited = True
                await asyncio.sleep(POLL_S)
            self.deferred += waited
            self.passed += 1
            self._next = self._clock() + self._gap_s
