"""The dispatcher reads when the earliest deferred row is due about once a second,
not on every pass (a read per dispatch was a measured share of each message's cost,
bench/scale.py --part cost); a deferral of its own is seen at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.gateway.helpers import ALICE, ROUTER, event, eventually, make_roster, open_store

from salon._exceptions import StoreError
from salon.gateway import dispatcher as dispatcher_module
from salon.gateway.dispatcher import Dispatcher
from salon.matrix.events import InboundEvent
from salon.store import Store
from salon.store.records import InboxState
from salon.supervisor import LoopHandle

ROOM = "!room:localhost"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


def counting_next_due(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    reads: list[int | None] = []
    real = store.inbox.next_due

    async def next_due(*, after: int | None = None) -> int | None:
        reads.append(after)
        return await real(after=after)

    monkeypatch.setattr(store.inbox, "next_due", next_due)
    return reads


async def test_next_due_is_not_read_on_every_pass(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "DUE_RECHECK_MS", 60_000)
    reads = counting_next_due(store, monkeypatch)
    done: list[str] = []

    async def handler(e: InboundEvent) -> tuple[InboxState, str]:
        done.append(e.event_id)
        return InboxState.DONE, "handled"

    dispatcher = Dispatcher(store, roster=make_roster(), created_at={})
    dispatcher.add_event_handler("m.room.message", handler)
    worker = asyncio.create_task(dispatcher.run(LoopHandle("dispatcher")))
    try:
        for n in range(20):  # one at a time: a pass each
            await dispatcher.admit(ROUTER, [event(ROOM, ALICE, f"m{n}")])
            await eventually(lambda n=n: len(done) == n + 1, what=f"message {n} handled")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert len(reads) <= 2, reads


async def test_an_own_deferral_is_read_again_and_retried_when_due(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "DUE_RECHECK_MS", 60_000)
    monkeypatch.setattr(dispatcher_module, "RETRY_INITIAL_MS", 200)
    reads = counting_next_due(store, monkeypatch)
    calls: list[str] = []

    async def handler(e: InboundEvent) -> tuple[InboxState, str]:
        calls.append(e.event_id)
        if len(calls) == 1:
            raise StoreError("store write failed: database is locked")
        return InboxState.DONE, "second time lucky"

    dispatcher = Dispatcher(store, roster=make_roster(), created_at={})
    dispatcher.add_event_handler("m.room.message", handler)
    worker = asyncio.create_task(dispatcher.run(LoopHandle("dispatcher")))
    try:
        message = event(ROOM, ALICE, "hello")
        await dispatcher.admit(ROUTER, [message])
        await eventually(lambda: len(calls) == 2, what="the retry, woken by its due time")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    # Read at the start, and again after the deferral (else the worker sleeps on).
    assert len(reads) >= 2
