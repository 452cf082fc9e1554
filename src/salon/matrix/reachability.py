"""Whether a homeserver answers, watched by one cheap probe while it does not.

Every loop and sender that hit an outage used to sleep its own growing backoff
(up to a minute), so replies resumed seconds after the homeserver was back. Now
they wait on :meth:`Reachability.pause` instead: the same backoff, cut short the
moment the homeserver answers again. While it is down, one probe per homeserver
(``GET /_matrix/client/versions``, no token) asks every ``interval_s``, however
many identities are waiting; any request of any identity that succeeds counts
as an answer too.

Only a homeserver that cannot be reached, or answers 5xx, starts the probe: a
429 is waited out as the server asked (see :mod:`salon.matrix.http`), and a
refusal (403, 404) is not an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp
import structlog

from salon._exceptions import MatrixConnectionError, MatrixRequestError
from salon.metrics import OUTAGE_PROBES

log = structlog.get_logger("salon.matrix.reachability")

VERSIONS = "/_matrix/client/versions"


def is_outage(error: BaseException) -> bool:
    """The homeserver is unreachable or failing as a whole (not a refusal, not a 429)."""
    if isinstance(error, MatrixConnectionError):
        return True
    return isinstance(error, MatrixRequestError) and error.http_status >= 500


class Reachability:
    """One homeserver's reachability, shared by every identity on it."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        interval_s: float = 0.5,
        timeout_s: float = 2.0,
    ) -> None:
        self.url = base_url.rstrip("/") + VERSIONS
        self.interval_s = interval_s
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._down = False
        # Set (and replaced) when the homeserver answers after being down: everyone
        # who started waiting before that moment wakes at once.
        self._back = asyncio.Event()
        self._probe: asyncio.Task[None] | None = None
        self._closed = False
        # Told True when the homeserver is found down, False when it answers again.
        self.listeners: list[Callable[[bool], None]] = []

    @property
    def down(self) -> bool:
        """The last word on the homeserver was that it does not answer."""
        return self._down

    def failed(self, error: BaseException) -> None:
        """A request failed; an outage starts the probe (one at a time). Any other
        error (a 404, a 429) was an answer."""
        if not is_outage(error):
            self.answered()
            return
        if self._closed:
            return
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._watch(), name=f"probe:{self.url}")

    def answered(self) -> None:
        """A request succeeded: the homeserver is back if it was down."""
        if not self._down:
            return
        self._down = False
        log.info("homeserver.back", url=self.url)
        back, self._back = self._back, asyncio.Event()
        back.set()
        self._tell(False)

    def _tell(self, down: bool) -> None:
        for listener in self.listeners:
            try:
                listener(down)
            except Exception as e:  # one listener's bug must not stop the others
                log.warning("homeserver.listener_failed", error=f"{type(e).__name__}: {e}")

    async def pause(self, delay_s: float, error: BaseException | None = None) -> bool:
        """Wait ``delay_s``, or less if the homeserver answers again meanwhile (only
        after an outage: any other ``error`` waits the whole delay). True if woken."""
        if error is not None:
            self.failed(error)
            if not is_outage(error):
                await asyncio.sleep(delay_s)
                return False
        back = self._back
        try:
            await asyncio.wait_for(back.wait(), delay_s)
        except TimeoutError:
            return False
        return True

    async def _watch(self) -> None:
        """Probe until the homeserver answers; mark it down meanwhile."""
        while not self._closed:
            if await self._probe_once():
                self.answered()
                return
            if not self._down:
                self._down = True
                log.warning("homeserver.down", url=self.url)
                self._tell(True)
            await asyncio.sleep(self.interval_s)

    async def _probe_once(self) -> bool:
        OUTAGE_PROBES.inc()
        try:
            async with self._session.get(self.url, timeout=self._timeout) as response:
                return response.status < 500
        except (aiohttp.ClientError, TimeoutError, RuntimeError):
            # RuntimeError: the session was closed under us (the gateway is stopping).
            return False

    async def close(self) -> None:
        """Stop probing (the gateway is stopping)."""
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
