"""Sending that waits out homeserver outages instead of failing the turn.

A send that fails because the homeserver is unreachable, answers 5xx or keeps
answering 429 is tried again, with backoff, with the *same* transaction id: the
homeserver turns a repeat into the first event, so nothing is posted twice and
the backend never runs again. Only a permanent refusal (403, 404…) is raised.
A wait in an outage ends as soon as the homeserver answers again (see
:mod:`salon.matrix.reachability`), not when the backoff runs out.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from salon._exceptions import MatrixError, UnknownTokenError, is_transient
from salon.ids import EventId, RoomId
from salon.matrix.api import MatrixAPI
from salon.metrics import OUTAGE_WAITS

log = structlog.get_logger("salon.matrix.delivery")

# A revoked token is waited out this many times (the sync loop logs in again within
# seconds); one that never comes back fails the send instead of hanging it.
MAX_TOKEN_WAITS = 12

T = TypeVar("T")


async def pause(api: MatrixAPI, delay_s: float, error: BaseException) -> None:
    """Wait ``delay_s`` after ``error``, or less if the homeserver was down and is back."""
    reachability = getattr(api, "reachability", None)  # stand-ins in tests may lack it
    if reachability is None:
        await asyncio.sleep(delay_s)
    else:
        await reachability.pause(delay_s, error)


class Delivery:
    """Sends events for turns, waiting out transient failures (until cancelled)."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0) -> None:
        self.initial_s = initial_s
        self.max_s = max_s

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failed tries in a row (jittered, capped)."""
        base = min(self.initial_s * 2 ** max(failures - 1, 0), self.max_s)
        return base * random.uniform(0.8, 1.2)

    async def send(
        self,
        api: MatrixAPI,
        room_id: RoomId,
        event_type: str,
        content: dict[str, Any],
        *,
        txn_id: str,
    ) -> EventId:
        """Send until the homeserver took it; returns its event id."""
        return await self.retry(
            api, lambda: api.send_event(room_id, event_type, content, txn_id=txn_id)
        )

    async def retry(self, api: MatrixAPI, call: Callable[[], Awaitable[T]]) -> T:
        """Make ``call`` (a request as ``api``'s user) until it succeeds, waiting out
        what a send waits out; a permanent refusal is raised."""
        failures = 0
        while True:
            try:
                return await call()
            except MatrixError as e:
                # A revoked token is waited out too: the identity's sync loop logs in
                # again and swaps the new token into this same handle.
                revoked = isinstance(e, UnknownTokenError)
                if not is_transient(e) and not (revoked and failures < MAX_TOKEN_WAITS):
                    raise
                failures += 1
                wait = self.delay(failures)
                OUTAGE_WAITS.inc()
                log_at = log.warning if failures == 1 else log.debug
                log_at(
                    "delivery.waiting", user=api.user_id, error=str(e), retry_in_s=round(wait, 2)
                )
                await pause(api, wait, e)

    async def try_send(
        self,
        api: MatrixAPI,
        room_id: RoomId,
        event_type: str,
        content: dict[str, Any],
        *,
        txn_id: str,
    ) -> EventId | None:
        """One try, for what a later send supersedes (an in-between edit): None on a
        transient failure."""
        try:
            return await api.send_event(room_id, event_type, content, txn_id=txn_id)
        except MatrixError as e:
            if not is_transient(e):
                raise
            log.debug("delivery.skipped", user=api.user_id, error=str(e))
            return None
