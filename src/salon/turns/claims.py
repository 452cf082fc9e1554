"""Closing a turn's ledger row only while this process holds it.

With several gateway processes on one database, a process paused past its lease
(a long GC, a stalled host, a slow store) may wake to find that another process
claimed its turn and runs it now. Its close must then write nothing: the row is
the other's to close. Such a refused write is logged and counted
(``salon_claim_lost_total``), so a lease too short for the deployment shows.
"""

from __future__ import annotations

import structlog

from salon.metrics import CLAIM_LOST
from salon.store import Store
from salon.store.leases import Holder
from salon.store.records import TurnState

log = structlog.get_logger("salon.turns.runner")


async def finish_held(
    store: Store,
    holder: Holder | None,
    key: tuple[str, str],
    state: TurnState,
    *,
    reply_event_id: str | None = None,
    error: str | None = None,
) -> bool:
    """Close turn ``key`` (event id, agent id) as ``state`` if ``holder`` holds it (None:
    the only process, always); False if another process claimed it since."""
    owner = None if holder is None else holder.owner
    turn_id, agent_id = key
    closed = await store.turns.finish(
        turn_id, agent_id, state, reply_event_id=reply_event_id, error=error, owner=owner
    )
    if not closed:
        CLAIM_LOST.labels(what="turn_finish").inc()
        log.warning("turn.claim_lost", turn=turn_id, agent=agent_id, owner=owner)
    return closed
