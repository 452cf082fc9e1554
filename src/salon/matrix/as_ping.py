"""Appservice mode: asking the homeserver to ping the listener once it is ready.

A homeserver that found the appservice down holds transactions back (Synapse: backing off
for up to minutes) and meanwhile drops to-device messages, room keys among them;
a ping (``POST /_matrix/client/v1/appservice/{id}/ping``) makes it retry at once.
Synapse fails a ping that races its own retry ("AlreadyCalled"): pinged again, the
next one wins, in the background (the start used to wait a second for it).
"""

from __future__ import annotations

import asyncio

import structlog

from salon._exceptions import MatrixError, MatrixRequestError
from salon.matrix.api import MatrixAPI

log = structlog.get_logger("salon.matrix.appservice")


async def ping_homeserver(
    api: MatrixAPI | None, appservice_id: str | None, attempts: int = 5, pause_s: float = 1.0
) -> asyncio.Task[None] | None:
    """Ask the homeserver (as ``api``, the appservice's sender) to ping us, once; after
    a server error, the task trying again (up to ``attempts`` in all), else None."""
    if await _ping_once(api, appservice_id, 1):
        return None

    async def again() -> None:
        for attempt in range(2, attempts + 1):
            await asyncio.sleep(pause_s)
            if await _ping_once(api, appservice_id, attempt):
                return

    return asyncio.create_task(again(), name="appservice-ping")


async def _ping_once(api: MatrixAPI | None, appservice_id: str | None, attempt: int) -> bool:
    """One ping; True if it is done (answered, or refused for good)."""
    if appservice_id is None or api is None:
        return True
    try:
        await api.ping_appservice(appservice_id)
        return True
    except MatrixError as e:
        log.warning("appservice.ping_failed", error=str(e), attempt=attempt)
        # Refused (no ping endpoint, wrong id): asking again won't help.
        return isinstance(e, MatrixRequestError) and e.http_status < 500
