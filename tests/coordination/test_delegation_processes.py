"""A delegation waited on in one gateway process and answered in another (several
processes on one store): the process that reads the answer (it claimed the target
room) or expires the delegation records it once, and the waiting process hands it to
its turn, which does not hang until the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.coordination.test_delegation_manager import ORIGIN_EVENT, TASK, World
from tests.gateway.helpers import WRITER_USER, eventually, open_store

from salon.agents.tools import DelegationOutcome
from salon.coordination.protocol import REQUEST
from salon.coordination.records import stable_id
from salon.store import Store

DELEGATION_ID = stable_id(ORIGIN_EVENT, "coder", "writer", TASK)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


async def test_an_answer_read_by_another_process_reaches_the_waiting_turn(
    store: Store,
) -> None:
    world = await World.make(store)
    waiting, other = world.manager(), world.manager()  # two processes' managers
    # The delegating turn runs in the waiting process.
    await store.turns.admit(ORIGIN_EVENT, "coder", world.origin_room)
    await store.turns.start(ORIGIN_EVENT, "coder")
    call = asyncio.ensure_future(
        waiting.delegate(
            "coder", "writer", TASK, origin_room=world.origin_room, origin_event=ORIGIN_EVENT
        )
    )
    await eventually(lambda: bool(world.in_writer_room(REQUEST)), what="the request")
    await asyncio.sleep(0.05)
    # The other process claimed the writer's room and reads the answer there.
    await other.on_status(
        world.status(DELEGATION_ID, WRITER_USER, state="completed", result="done elsewhere")
    )
    assert not call.done()
    deadlines = asyncio.ensure_future(waiting.run_deadlines(None, every_s=0.05))
    try:
        outcome = await asyncio.wait_for(call, 10.0)
    finally:
        deadlines.cancel()
        await asyncio.gather(deadlines, return_exceptions=True)
    assert outcome == DelegationOutcome(True, "done elsewhere")
    record = await store.delegations.get(DELEGATION_ID)
    assert record is not None and record.reinjected
    assert world.reports == []  # handed to the turn, not reported besides
