"""Rooms side by side on a real SQLite store: one room's slow or deferred event holds up
no other room, each room's events stay in order, and at most ``max_rooms`` at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.gateway.helpers import ALICE, BOB, ROUTER, event, eventually, now_ms, open_store
from tests.gateway.test_dispatcher import make_dispatcher, run_worker, state_is, stop

from salon._exceptions import MatrixConnectionError
from salon.gateway import dispatcher as dispatcher_module
from salon.matrix.events import InboundEvent
from salon.store import Store
from salon.store.records import InboxState

ROOM_A = "!a:localhost"
ROOM_B = "!b:localhost"
ROOM_C = "!c:localhost"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


class Gate:
    """A handler that holds every event whose body is in ``held`` until released, and
    logs when each pass starts and ends."""

    def __init__(self, *held: str) -> None:
        self.held = set(held)
        self.open = asyncio.Event()
        self.log: list[str] = []
        self.running = 0
        self.max_running = 0

    async def __call__(self, e: InboundEvent) -> tuple[InboxState, str]:
        self.log.append(f"start {e.body}")
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if e.body in self.held:
                await self.open.wait()
            await asyncio.sleep(0.01)
        finally:
            self.running -= 1
        self.log.append(f"end {e.body}")
        return InboxState.DONE, "handled"


def _events(*specs: tuple[str, str]) -> list[InboundEvent]:
    base = now_ms()
    return [
        event(room, ALICE if room != ROOM_B else BOB, body, origin_ts=base + i)
        for i, (room, body) in enumerate(specs)
    ]


async def test_a_slow_room_holds_up_no_other_room(store: Store) -> None:
    gate = Gate("a1")
    dispatcher = make_dispatcher(store, gate)
    worker = await run_worker(dispatcher)
    try:
        a1, a2, b1 = _events((ROOM_A, "a1"), (ROOM_A, "a2"), (ROOM_B, "b1"))
        await dispatcher.admit(ROUTER, [a1, a2, b1])
        await eventually(lambda: state_is(store, b1.event_id, InboxState.DONE), what="b1 done")
        assert "start a2" not in gate.log, "a2 waits for a1, in its own room"
        gate.open.set()
        await eventually(lambda: state_is(store, a2.event_id, InboxState.DONE), what="a2 done")
    finally:
        await stop(worker)
    room_a = [line for line in gate.log if line.split()[1].startswith("a")]
    assert room_a == ["start a1", "end a1", "start a2", "end a2"]


async def test_a_deferred_event_holds_back_its_own_room_only(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "RETRY_INITIAL_MS", 300)
    seen: list[str] = []

    async def handler(e: InboundEvent) -> tuple[InboxState, str]:
        seen.append(e.body)
        if e.body == "a1" and seen.count("a1") == 1:
            raise MatrixConnectionError("homeserver unreachable")
        return InboxState.DONE, "handled"

    dispatcher = make_dispatcher(store, handler)
    worker = await run_worker(dispatcher)
    try:
        a1, a2, b1 = _events((ROOM_A, "a1"), (ROOM_A, "a2"), (ROOM_B, "b1"))
        await dispatcher.admit(ROUTER, [a1])
        await eventually(lambda: seen == ["a1"], what="a1's first pass")
        await dispatcher.admit(ROUTER, [a2, b1])
        await eventually(lambda: state_is(store, b1.event_id, InboxState.DONE), what="b1 done")
        row = await store.inbox.get(a2.event_id)
        assert row is not None and row.state is InboxState.NEW, "a2 waits for a1's retry"
        await eventually(lambda: state_is(store, a2.event_id, InboxState.DONE), what="a2 done")
    finally:
        await stop(worker)
    assert seen == ["a1", "b1", "a1", "a2"]


async def test_at_most_max_rooms_are_handled_at_once(store: Store) -> None:
    gate = Gate("a1", "b1", "c1")
    dispatcher = make_dispatcher(store, gate)
    dispatcher._max_rooms = 2
    worker = await run_worker(dispatcher)
    try:
        events = _events((ROOM_A, "a1"), (ROOM_B, "b1"), (ROOM_C, "c1"))
        await dispatcher.admit(ROUTER, events)
        await eventually(lambda: gate.running == 2, what="two rooms handled")
        await asyncio.sleep(0.1)
        assert gate.running == 2, "the third room waits for a free place"
        gate.open.set()
        for e in events:
            await eventually(lambda e=e: state_is(store, e.event_id, InboxState.DONE))
    finally:
        await stop(worker)
    assert gate.max_running == 2
    assert gate.log[:2] == ["start a1", "start b1"], "rooms take their turns in arrival order"


async def test_pause_finishes_the_rows_in_hand_and_leaves_the_rest_pending(store: Store) -> None:
    gate = Gate("a1", "b1")
    dispatcher = make_dispatcher(store, gate)
    worker = await run_worker(dispatcher)
    try:
        a1, a2, b1 = _events((ROOM_A, "a1"), (ROOM_A, "a2"), (ROOM_B, "b1"))
        await dispatcher.admit(ROUTER, [a1, a2, b1])
        await eventually(lambda: gate.running == 2, what="both rooms at work")
        dispatcher.pause()
        assert not await dispatcher.settle(0.1), "settle waits for the rows in hand"
        gate.open.set()
        assert await dispatcher.settle(2.0)
        assert await state_is(store, a1.event_id, InboxState.DONE)
        assert await state_is(store, b1.event_id, InboxState.DONE)
        assert await state_is(store, a2.event_id, InboxState.NEW), "a2 waits for the next start"
        dispatcher.resume()
        await eventually(lambda: state_is(store, a2.event_id, InboxState.DONE), what="a2 done")
    finally:
        await stop(worker)
    assert gate.log.count("start a2") == 1


async def test_many_events_of_many_rooms_are_each_handled_once_in_room_order(
    store: Store,
) -> None:
    seen: list[str] = []

    async def handler(e: InboundEvent) -> tuple[InboxState, str]:
        seen.append(e.body)
        await asyncio.sleep(0.001 * (hash(e.body) % 3))
        return InboxState.DONE, "handled"

    dispatcher = make_dispatcher(store, handler)
    dispatcher._per_room = 3
    dispatcher._batch = 7
    worker = await run_worker(dispatcher)
    rooms = [f"!r{r}:localhost" for r in range(5)]
    try:
        for round_ in range(4):
            batch = _events(*((room, f"{room} {round_}-{i}") for room in rooms for i in range(5)))
            await dispatcher.admit(ROUTER, batch)
            await asyncio.sleep(0.01)
        await eventually(lambda: len(seen) >= 100, timeout=10, what="all handled")
        await asyncio.sleep(0.1)
    finally:
        await stop(worker)
    assert len(seen) == len(set(seen)) == 100, "each event once"
    for room in rooms:
        mine = [s for s in seen if s.startswith(room)]
        assert mine == sorted(mine), f"{room} in order"


async def test_settle_ends_at_its_timeout_or_when_interrupted(store: Store) -> None:
    gate = Gate("a1")
    dispatcher = make_dispatcher(store, gate)
    worker = await run_worker(dispatcher)
    try:
        (a1,) = _events((ROOM_A, "a1"))
        await dispatcher.admit(ROUTER, [a1])
        await eventually(lambda: gate.running == 1, what="a1 in hand")
        dispatcher.pause()
        began = asyncio.get_running_loop().time()
        assert not await dispatcher.settle(0.2)
        assert asyncio.get_running_loop().time() - began < 1.0
        interrupt = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, interrupt.set)
        assert not await dispatcher.settle(30, interrupt), "stop now: no more waiting"
        gate.open.set()
        assert await dispatcher.settle(2.0)
    finally:
        await stop(worker)


async def test_a_read_does_not_return_the_rows_in_hand_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load every read returned (and rewrote) every row already in a lane, several
    reads a message: now only what the lanes do not hold yet."""
    gate = Gate("a1", "b1")
    dispatcher = make_dispatcher(store, gate)
    returned: list[list[str]] = []
    claim = store.inbox.claim

    async def spied(*args: object, **kwargs: object) -> list[object]:
        rows = await claim(*args, **kwargs)  # type: ignore[arg-type]
        returned.append([r.item.event_id for r in rows])
        return rows  # type: ignore[return-value]

    monkeypatch.setattr(store.inbox, "claim", spied)
    worker = await run_worker(dispatcher)
    try:
        a1, a2, b1, c1 = _events((ROOM_A, "a1"), (ROOM_A, "a2"), (ROOM_B, "b1"), (ROOM_C, "c1"))
        await dispatcher.admit(ROUTER, [a1, a2, b1])
        await eventually(lambda: "start b1" in gate.log and "start a1" in gate.log, what="held")
        returned.clear()
        await dispatcher.admit(ROUTER, [c1])
        await eventually(lambda: state_is(store, c1.event_id, InboxState.DONE), what="c1 done")
        assert returned and returned[0] == [c1.event_id], "a1, a2 and b1 are in hand"
        gate.open.set()
        await eventually(lambda: state_is(store, a2.event_id, InboxState.DONE), what="a2 done")
        assert await state_is(store, b1.event_id, InboxState.DONE)
    finally:
        await stop(worker)
    assert [line for line in gate.log if line.startswith("start")].count("start a2") == 1
