"""Which store errors are worth a retry: a busy (locked) database is, a constraint is
not; and the inbox drops an event whose handler hits a store error that will never
go away, instead of retrying it forever (a real SQLite store)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.gateway.helpers import ALICE, ROUTER, event, eventually, open_store, sample
from tests.gateway.test_dispatcher import (
    ROOM,
    inbox_row,
    make_dispatcher,
    run_worker,
    state_is,
    stop,
)

from salon._exceptions import StoreError, is_transient
from salon.matrix.events import InboundEvent
from salon.store import Store
from salon.store.records import InboxState, TurnState

INSERT_TURN = (
    "INSERT INTO turns (event_id, agent_id, room_id, state, updated_at)"
    " VALUES ($1, 'coder', '!r', 'admitted', 0)"
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


def test_a_store_error_is_transient_unless_said_otherwise() -> None:
    assert is_transient(StoreError("store write failed: database is locked"))
    assert not is_transient(StoreError("store write failed: CHECK failed", transient=False))


async def test_locked_database_is_transient(store: Store) -> None:
    await store.db.execute("PRAGMA busy_timeout = 0")  # fail at once instead of waiting
    other = sqlite3.connect(store.db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(StoreError, match="locked") as locked:
            await store.turns.admit("$e", "coder", "!r")
        assert isinstance(locked.value.__cause__, sqlite3.OperationalError)
        assert is_transient(locked.value)
        other.execute("ROLLBACK")
    finally:
        other.close()

    # A later try of the same write works.
    assert await store.turns.admit("$e", "coder", "!r")
    record = await store.turns.get("$e", "coder")
    assert record is not None and record.state is TurnState.ADMITTED


async def test_constraint_violation_is_not_transient(store: Store) -> None:
    await store.db.execute(INSERT_TURN, "$e")
    with pytest.raises(StoreError, match="UNIQUE constraint failed") as constraint:
        await store.db.execute(INSERT_TURN, "$e")
    assert isinstance(constraint.value.__cause__, sqlite3.IntegrityError)
    assert not is_transient(constraint.value), "the same write fails the same way again"


async def test_handler_hitting_a_permanent_store_error_drops_the_event(store: Store) -> None:
    calls: list[str] = []

    async def handler(e: InboundEvent) -> tuple[InboxState, str]:
        calls.append(e.event_id)
        await store.db.execute(INSERT_TURN, "$same")  # a bug: the same key twice
        await store.db.execute(INSERT_TURN, "$same")
        return InboxState.DONE, "handled"

    dispatcher = make_dispatcher(store, handler)
    dropped_before = sample("salon_events_dropped_total", reason="error")
    deferred_before = sample("salon_inbox_deferred_total")
    worker = await run_worker(dispatcher)
    try:
        message = event(ROOM, ALICE, "hello")
        await dispatcher.admit(ROUTER, [message])
        await eventually(
            lambda: state_is(store, message.event_id, InboxState.DROPPED), what="the drop"
        )
        assert not worker.done(), "the worker keeps running"
    finally:
        await stop(worker)

    row = await inbox_row(store, message.event_id)
    assert row["reason"].startswith("error: StoreError: store write failed: UNIQUE constraint")
    assert row["attempts"] == 0 and row["last_error"] is None, "not deferred"
    assert calls == [message.event_id], "tried once"
    assert sample("salon_events_dropped_total", reason="error") == dropped_before + 1
    assert sample("salon_inbox_deferred_total") == deferred_before
