"""Resuming open turns: after a restart, and those of a process that died.

With several gateway processes on one database, an open turn is held by the
process running it (the ledger row's owner, see :mod:`salon.store.leases`). A
turn is resumed only after it is claimed here: nobody's, this process's, or a
dead owner's whose lease ran out — so no two processes ever run it at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from salon.store.records import TurnRecord, TurnState
from salon.turns.spec import TurnKind, TurnSpec

if TYPE_CHECKING:
    from salon.turns.runner import TurnRunner

log = structlog.get_logger("salon.turns.runner")


def spec_of(record: TurnRecord) -> TurnSpec | None:
    """The spec a turn's ledger row was stored with (None: none, or unreadable)."""
    if not record.spec:
        return None  # a row from before specs were stored: nothing to run it from
    try:
        return TurnSpec.from_json(record.spec)
    except ValueError:
        log.warning("turn.bad_spec", turn=record.event_id, agent=record.agent_id)
        return None


async def resume_claimable(runner: TurnRunner) -> int:
    """Claim and relaunch the open turns no live process holds; returns how many."""
    holder = runner.holder
    store = runner.store
    owner = None if holder is None else holder.owner
    count = 0
    for record in await store.turns.unfinished(owner):
        spec = spec_of(record)
        if spec is None or spec.agent_id not in runner.agents:
            continue  # another process's agent (or nothing to run it from)
        if spec.key in runner.in_flight():
            continue  # running here already
        if holder is not None:
            if (
                await store.turns.claim(spec.turn_id, spec.agent_id, owner or "", holder.until())
                is None
            ):
                continue  # closed meanwhile, or another process took it first
            if record.owner not in (None, owner):
                log.info("turn.reclaimed", turn=spec.turn_id, agent=spec.agent_id, was=record.owner)
        if spec.kind is TurnKind.API:
            # Its caller's connection died with the process: nobody to answer.
            await store.turns.finish(
                spec.turn_id, spec.agent_id, TurnState.FAILED, error="interrupted", owner=owner
            )
            continue
        runner.launch(spec)
        count += 1
    return count
