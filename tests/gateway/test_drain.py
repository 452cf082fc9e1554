"""Graceful shutdown on a fake homeserver and a real SQLite store: the turn runner's
bounded drain, and the dispatcher leaving the inbox alone while the gateway stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.gateway.helpers import (
    ScriptedBackend,
    TurnRig,
    event,
    eventually,
    open_store,
)
from tests.gateway.test_dispatcher import (
    ROOM,
    Recorder,
    make_dispatcher,
    run_worker,
    state_is,
    stop,
)

from salon.matrix.events import InboundEvent
from salon.store import Store
from salon.store.records import InboxState, TurnState
from salon.turns.slots import SlotLimits
from salon.turns.spec import OutcomeState


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


async def test_a_slow_turn_finishes_within_the_drain(store: Store, tmp_path: Path) -> None:
    backend = ScriptedBackend(chunks=("slow ", "but whole"), first_delay=0.4, delay=0.1)
    rig = await TurnRig.start(store, tmp_path, backend)
    spec = await rig.message("take your time")
    await rig.runner.submit(spec)
    await eventually(lambda: backend.running == 1, what="the backend to start")

    began = time.monotonic()
    cut = await rig.runner.drain(5.0)
    waited = time.monotonic() - began

    assert cut == 0
    assert waited < 2.0, "the drain ends when the last turn does, not at its deadline"
    assert not rig.in_flight()
    record = await rig.turn(spec)
    assert record.state is TurnState.REPLIED and record.attempts == 1
    [reply] = rig.replies()
    assert rig.shown(reply["event_id"]) == "slow but whole"


async def test_a_turn_too_slow_for_the_drain_is_cut_off_and_resumes_on_next_start(
    store: Store, tmp_path: Path
) -> None:
    # Its first chunk is out (a reply message), then the model takes far too long.
    backend = ScriptedBackend(chunks=("Part one. ", "Part two."), delay=30)
    rig = await TurnRig.start(store, tmp_path, backend)
    spec = await rig.message("a long answer please")
    await rig.runner.submit(spec)
    await eventually(lambda: len(rig.replies()) == 1, what="the first chunk to be sent")

    began = time.monotonic()
    cut = await rig.runner.drain(0.3)
    waited = time.monotonic() - began

    assert cut == 1
    assert 0.25 <= waited < 2.0
    assert not rig.in_flight(), "the cut-off turn's task has ended"
    assert backend.finished == 0
    record = await rig.turn(spec)
    # Still owed, and the interrupted attempt was given back: not the turn's fault.
    assert record.state is TurnState.ADMITTED
    assert record.attempts == 0
    first = rig.replies()[0]["event_id"]
    assert record.reply_event_id == first

    # The next start runs it again and finishes the same reply: no second message.
    rig.runner = rig.new_runner(backend=ScriptedBackend(chunks=("Part one. Part two.",)))
    assert await rig.runner.resume_unfinished() == 1
    record = await rig.closed(spec)
    assert record.state is TurnState.REPLIED and record.attempts == 1
    assert [r["event_id"] for r in rig.replies()] == [first]
    assert rig.shown(first) == "Part one. Part two."


async def test_turns_queued_or_submitted_while_draining_wait_for_the_next_start(
    store: Store, tmp_path: Path
) -> None:
    # One turn at a time: the second one waits for a slot.
    backend = ScriptedBackend(chunks=("done",), first_delay=0.5)
    rig = await TurnRig.start(store, tmp_path, backend, slot_limits=SlotLimits(1, 1, 1))
    running, queued = await rig.message("first"), await rig.message("second")
    await rig.runner.submit(running)
    await rig.runner.submit(queued)
    await eventually(lambda: backend.running == 1, what="the first turn to start")

    # Long enough for the first (0.5 s), too short for the queued one after it (1 s).
    drain = asyncio.create_task(rig.runner.drain(0.8))
    await asyncio.sleep(0.05)
    late = await rig.message("sent during the drain")
    assert await rig.runner.submit(late) is True  # ledgered...
    assert late.key not in rig.in_flight()  # ...but not started
    cut = await drain

    # The first finished; the queued one got a slot but not the time to finish.
    assert (await rig.turn(running)).state is TurnState.REPLIED
    assert cut == 1
    queued_row, late_row = await rig.turn(queued), await rig.turn(late)
    assert queued_row.state is TurnState.ADMITTED and queued_row.attempts == 0
    assert late_row.state is TurnState.ADMITTED and late_row.attempts == 0
    assert backend.calls == 2  # the late turn never reached the backend
    assert len(rig.replies()) == 1

    rig.runner = rig.new_runner(backend=ScriptedBackend(chunks=("later",)))
    assert await rig.runner.resume_unfinished() == 2
    for spec in (queued, late):
        assert (await rig.closed(spec)).state is TurnState.REPLIED
    assert len(rig.replies()) == 3


async def test_interrupt_ends_the_drain_at_once(store: Store, tmp_path: Path) -> None:
    backend = ScriptedBackend(chunks=("never",), first_delay=30)
    rig = await TurnRig.start(store, tmp_path, backend)
    spec = await rig.message("slow")
    await rig.runner.submit(spec)
    await eventually(lambda: backend.running == 1, what="the backend to start")
    # Whoever watches the turn (an API caller) hears that it was interrupted.
    watcher = rig.runner.watchers.watch(spec.key)

    interrupt = asyncio.Event()
    drain = asyncio.create_task(rig.runner.drain(60, interrupt=interrupt))
    await asyncio.sleep(0.1)
    assert not drain.done()
    began = time.monotonic()
    interrupt.set()
    cut = await asyncio.wait_for(drain, 30)

    assert cut == 1
    assert time.monotonic() - began < 10  # not the 60 s the drain would wait
    record = await rig.turn(spec)
    assert record.state is TurnState.ADMITTED and record.attempts == 0
    assert watcher.done.done() and watcher.done.result().state is OutcomeState.FAILED
    assert not rig.replies()


async def test_drain_with_nothing_running_returns_at_once(store: Store, tmp_path: Path) -> None:
    rig = await TurnRig.start(store, tmp_path)
    began = time.monotonic()
    assert await rig.runner.drain(60) == 0
    assert time.monotonic() - began < 10  # not the 60 s it may wait


async def test_a_paused_dispatcher_admits_but_leaves_events_pending(store: Store) -> None:
    handler = Recorder()
    dispatcher = make_dispatcher(store, handler)
    worker = await run_worker(dispatcher)
    try:
        before = event(ROOM, "@alice:localhost", "before")
        await dispatcher.admit(before.received_by, [before])
        await eventually(lambda: state_is(store, before.event_id, InboxState.DONE))

        dispatcher.pause()
        assert dispatcher.paused
        during = event(ROOM, "@alice:localhost", "during shutdown")
        await dispatcher.admit(during.received_by, [during])
        await asyncio.sleep(0.3)
        assert await state_is(store, during.event_id, InboxState.NEW)
        assert handler.seen == [before.event_id]

        # The next start (here: resume) handles it.
        dispatcher.resume()
        await eventually(lambda: state_is(store, during.event_id, InboxState.DONE))
        assert handler.seen == [before.event_id, during.event_id]
    finally:
        await stop(worker)


async def test_pause_stops_in_the_middle_of_a_batch(store: Store) -> None:
    dispatcher = make_dispatcher(store)
    seen: list[str] = []

    async def handle(e: InboundEvent) -> tuple[InboxState, str]:
        seen.append(e.event_id)
        if len(seen) == 1:
            dispatcher.pause()  # the signal arrives while the first row is handled
        return InboxState.DONE, "handled"

    dispatcher.add_event_handler("m.room.message", handle)
    events = [event(ROOM, "@alice:localhost", f"m{i}") for i in range(3)]
    await dispatcher.admit(events[0].received_by, events)
    worker = await run_worker(dispatcher)
    try:
        # Whichever row comes first: the three share a timestamp, and the inbox breaks
        # the tie by event id ("$ev10" before "$ev9" once the ids reach two digits).
        async def first_done() -> bool:
            return bool(seen) and await state_is(store, seen[0], InboxState.DONE)

        await eventually(first_done, what="the first row handled")
        await asyncio.sleep(0.2)
        assert len(seen) == 1
        for e in events:
            if e.event_id != seen[0]:
                assert await state_is(store, e.event_id, InboxState.NEW)
    finally:
        await stop(worker)
