"""Appservice mode: asking the homeserver to ping the listener once it is ready.

A homeserver that found the appservice down holds transactions back (Synapse: backing
off for up to minutes) and meanwhile drops to-device messages, room keys among them;
a ping (``POST /_matrix/client/v1/appservice/{id}/ping``) makes it retry at once.
Synapse fails a ping that races its own retry ("AlreadyCalled"): pinged again, the
next one wins.
"""

from __future__ import annotations

import asyncio

import structlog

from salon._exceptions import MatrixError, MatrixRequestError
from salon.matrix.api import MatrixAPI

log = structlog.get_logger("salon.matrix.appservice")


async def ping_homeserver(
    api: MatrixAPI | None, appservice_id: str | None, attempts: int = 5, pause_s: float = 1.0
) -> None:
    """Ask the homeserver (as ``api``, the appservice's sender) to ping us; server
    errors are tried again up to ``attempts`` times, a refusal is left at that."""
    if appservice_id is None or api is None:
        return
    for attempt in range(1, attempts + 1):
        try:
            await api.ping_appservice(appservice_id)
            return
        except MatrixError as e:
            log.warning("appservice.ping_failed", error=str(e), attempt=attempt)
            if isinstance(e, MatrixRequestError) and e.http_status < 500:
                return  # refused (no ping endpoint, wrong id): asking again won't help
        await asyncio.sleep(pause_s)
