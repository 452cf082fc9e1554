"""The dispatcher on a real SQLite store: admission, a supervised worker that survives
store errors, transient errors deferred, permanent ones dropped with their reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.helpers import (
    ALICE,
    CODER_USER,
    ROUTER,
    event,
    eventually,
    make_roster,
    now_ms,
    open_store,
    sample,
)

from salon._exceptions import (
    ForbiddenError,
    MatrixConnectionError,
    MatrixRequestError,
    StoreError,
)
from salon.gateway import dispatcher as dispatcher_module
from salon.gateway.dispatcher import ADMIT_MAX_HOP, Dispatcher
from salon.ids import UserId
from salon.matrix.events import InboundEvent
from salon.store import Store
from salon.store.records import InboxItem, InboxRow, InboxState
from salon.supervisor import Backoff, LoopHandle, Supervisor
from salon.turns.replies import TURN_KEY

ROOM = "!room:localhost"
Handler = Callable[[InboundEvent], Awaitable[tuple[InboxState, str]]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


class Recorder:
    """A handler: records the events it is given, answers with ``done``."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, e: InboundEvent) -> tuple[InboxState, str]:
        self.seen.append(e.event_id)
        return InboxState.DONE, "handled"


def make_dispatcher(
    store: Store, handler: Handler | None = None, *, created_at: int = 0
) -> Dispatcher:
    dispatcher = Dispatcher(
        store, roster=make_roster(), created_at={ROUTER: created_at, CODER_USER: created_at}
    )
    dispatcher.add_event_handler("m.room.message", handler or Recorder())
    return dispatcher


async def inbox_row(store: Store, event_id: str) -> dict[str, Any]:
    """The raw inbox row (reason, attempts, next_at and last_error included)."""
    row = await store.db.fetchone("SELECT * FROM inbox WHERE event_id = $1", event_id)
    assert row is not None, f"{event_id} was not admitted"
    return dict(row)


async def state_is(store: Store, event_id: str, state: InboxState) -> bool:
    row = await store.inbox.get(event_id)
    return row is not None and row.state is state


async def run_worker(dispatcher: Dispatcher) -> asyncio.Task[None]:
    """The worker as the gateway runs it, unsupervised (it must not end on its own)."""
    return asyncio.create_task(dispatcher.run(LoopHandle("dispatcher")))


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# --- a supervised worker ------------------------------------------------------------------


async def test_store_error_in_the_worker_is_survived(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = Recorder()
    dispatcher = make_dispatcher(store, handler)
    real_claim = store.inbox.claim
    failures = {"left": 2}

    async def claim(owner: str, lease_ms: int, **kwargs: int) -> list[InboxRow]:
        if failures["left"]:
            failures["left"] -= 1
            raise StoreError("store read failed: database is locked")
        return await real_claim(owner, lease_ms, **kwargs)

    monkeypatch.setattr(store.inbox, "claim", claim)
    supervisor = Supervisor(Backoff(initial_s=0.01, max_s=0.05))
    handle = supervisor.spawn("dispatcher", dispatcher.run)
    try:
        await eventually(lambda: handle.restarts == 2, what="two restarts")
        message = event(ROOM, ALICE, "still there?")
        await dispatcher.admit(ROUTER, [message])
        await eventually(
            lambda: state_is(store, message.event_id, InboxState.DONE), what="the event handled"
        )
    finally:
        await supervisor.stop()

    assert handler.seen == [message.event_id]
    assert handle.last_error == "StoreError: store read failed: database is locked"
    assert failures["left"] == 0


@pytest.mark.parametrize(
    "error",
    [
        MatrixConnectionError("homeserver unreachable"),
        MatrixRequestError("bad gateway", http_status=502),
        StoreError("store write failed: database is locked"),
    ],
    ids=["connection", "5xx", "store"],
)
async def test_transient_handler_error_leaves_the_row_pending_then_handles_it(
    store: Store, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.setattr(dispatcher_module, "RETRY_INITIAL_MS", 50)
    calls: list[str] = []
    release = asyncio.Event()

    async def handler(e: InboundEvent) -> tuple[InboxState, str]:
        calls.append(e.event_id)
        if len(calls) == 1:
            raise error
        await release.wait()  # hold the second pass, to look at the row in between
        return InboxState.DONE, "second time lucky"

    dispatcher = make_dispatcher(store, handler)
    deferred_before = sample("salon_inbox_deferred_total")
    worker = await run_worker(dispatcher)
    try:
        message = event(ROOM, ALICE, "hello")
        started = now_ms()
        await dispatcher.admit(ROUTER, [message])
        await eventually(lambda: len(calls) == 2, what="the second pass")

        row = await inbox_row(store, message.event_id)
        assert row["state"] == "new"
        assert row["attempts"] == 1
        assert row["last_error"] == str(error)
        assert row["next_at"] >= started + 50
        assert sample("salon_inbox_deferred_total") == deferred_before + 1

        release.set()
        await eventually(
            lambda: state_is(store, message.event_id, InboxState.DONE), what="the event done"
        )
        assert not worker.done(), "the worker keeps running"
    finally:
        await stop(worker)
    row = await inbox_row(store, message.event_id)
    assert row["reason"] == "second time lucky"
    assert row["attempts"] == 1


@pytest.mark.parametrize(
    "error",
    [ValueError("no such thing"), ForbiddenError("not in room", http_status=403)],
    ids=["ValueError", "ForbiddenError"],
)
async def test_permanent_handler_error_drops_the_row_with_its_reason(
    store: Store, error: Exception
) -> None:
    calls: list[str] = []

    async def handler(e: InboundEvent) -> tuple[InboxState, str]:
        calls.append(e.event_id)
        raise error

    dispatcher = make_dispatcher(store, handler)
    dropped_before = sample("salon_events_dropped_total", reason="error")
    worker = await run_worker(dispatcher)
    try:
        message = event(ROOM, ALICE, "hello")
        following = event(ROOM, ALICE, "and another")
        await dispatcher.admit(ROUTER, [message])
        await eventually(lambda: state_is(store, message.event_id, InboxState.DROPPED))
        # The worker goes on with the next event.
        await dispatcher.admit(ROUTER, [following])
        await eventually(lambda: state_is(store, following.event_id, InboxState.DROPPED))
        assert not worker.done(), "the worker keeps running"
    finally:
        await stop(worker)

    row = await inbox_row(store, message.event_id)
    assert row["reason"] == f"error: {type(error).__name__}: {error}"
    assert row["attempts"] == 0 and row["last_error"] is None
    assert sample("salon_events_dropped_total", reason="error") == dropped_before + 2
    assert calls.count(message.event_id) == 1, "a permanent error is not retried"


@pytest.mark.parametrize(
    "event_json",
    ["{not json", json.dumps({"event_id": "$bad", "type": "m.room.message"}), "[1, 2]"],
    ids=["not-json", "no-sender", "not-an-object"],
)
async def test_malformed_row_is_dropped_as_malformed(store: Store, event_json: str) -> None:
    handler = Recorder()
    dispatcher = make_dispatcher(store, handler)
    item = InboxItem(
        event_id="$bad",
        room_id=ROOM,
        sender=ALICE,
        event_type="m.room.message",
        event_json=event_json,
        origin_ts=now_ms(),
        received_by=ROUTER,
    )
    assert await store.inbox.admit([item]) == 1
    dropped_before = sample("salon_events_dropped_total", reason="malformed")
    worker = await run_worker(dispatcher)
    try:
        await eventually(lambda: state_is(store, "$bad", InboxState.DROPPED))
    finally:
        await stop(worker)

    assert (await inbox_row(store, "$bad"))["reason"] == "malformed"
    assert sample("salon_events_dropped_total", reason="malformed") == dropped_before + 1
    assert handler.seen == []


# --- admission -----------------------------------------------------------------------------


async def test_only_new_messages_worth_handling_are_admitted(store: Store) -> None:
    dispatcher = make_dispatcher(store)
    message = event(ROOM, ALICE, "hello")
    # Our agent's message that may address another agent (routing decides whom).
    agent_message = event(
        ROOM,
        CODER_USER,
        content={
            "body": "@salon_writer: over to you",
            "m.mentions": {"user_ids": ["@salon_writer:localhost"]},
            TURN_KEY: {"hop": 1},
        },
    )
    not_admitted = {
        "router echo": event(ROOM, ROUTER, "@alice:localhost nobody is here"),
        # In an agent's own room the agent answers commands in the router's place.
        "gateway notice voiced by an agent": event(
            ROOM,
            CODER_USER,
            content={
                "msgtype": "m.notice",
                "body": "@alice:localhost: saved as “first”",
                TURN_KEY: {"agent": "router", "gateway": True, "hop": 1},
            },
        ),
        "edit": event(
            ROOM,
            ALICE,
            content={
                "body": "* fixed",
                "m.new_content": {"body": "fixed"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": message.event_id},
            },
        ),
        "state event": event(
            ROOM, ALICE, event_type="m.room.message", content={"body": "x"}, state_key=""
        ),
        "member event": event(
            ROOM, ALICE, event_type="m.room.member", content={"membership": "join"}, state_key=ALICE
        ),
        "no handler": event(ROOM, ALICE, event_type="m.reaction", content={}),
        "our agent's reply, addressed to no one": event(
            ROOM, CODER_USER, content={"body": "here you go", TURN_KEY: {"hop": 1}}
        ),
        "runaway bot": event(
            ROOM,
            CODER_USER,
            content={
                "body": "@salon_writer: again",
                "m.mentions": {"user_ids": ["@salon_writer:localhost"]},
                TURN_KEY: {"hop": ADMIT_MAX_HOP},
            },
        ),
    }

    # An agent that happens to be called "router" is still an agent.
    agent_called_router = event(
        ROOM,
        CODER_USER,
        content={
            "body": "@salon_writer: over to you",
            "m.mentions": {"user_ids": ["@salon_writer:localhost"]},
            TURN_KEY: {"agent": "router", "hop": 1},
        },
    )
    await dispatcher.admit(
        ROUTER, [message, agent_message, agent_called_router, *not_admitted.values()]
    )
    assert await store.inbox.get(agent_called_router.event_id) is not None

    assert await store.inbox.get(message.event_id) is not None
    assert await store.inbox.get(agent_message.event_id) is not None
    for why, e in not_admitted.items():
        assert await store.inbox.get(e.event_id) is None, why


async def test_history_older_than_the_identity_is_not_admitted(store: Store) -> None:
    created = now_ms()
    dispatcher = make_dispatcher(store, created_at=created)
    old = event(ROOM, ALICE, "from before we existed", origin_ts=created - 60_000)
    new = event(ROOM, ALICE, "after", origin_ts=created + 1)
    history_before = sample("salon_events_dropped_total", reason="history")

    await dispatcher.admit(ROUTER, [old, new])

    assert await store.inbox.get(old.event_id) is None
    assert await store.inbox.get(new.event_id) is not None
    assert sample("salon_events_dropped_total", reason="history") == history_before + 1
    # Another identity, created earlier, is not bound by this one's age.
    elsewhere = Dispatcher(store, roster=make_roster(), created_at={UserId("@x:localhost"): 0})
    elsewhere.add_event_handler("m.room.message", Recorder())
    await elsewhere.admit(UserId("@x:localhost"), [old])
    assert await store.inbox.get(old.event_id) is not None


async def test_admitting_twice_stores_once(store: Store) -> None:
    dispatcher = make_dispatcher(store)
    message = event(ROOM, ALICE, "hello")
    admitted_before = sample("salon_events_admitted_total")

    await dispatcher.admit(ROUTER, [message])
    await dispatcher.admit(CODER_USER, [message])  # the same event seen by another identity

    assert sample("salon_events_admitted_total") == admitted_before + 1
    assert await store.inbox.count(InboxState.NEW) == 1


async def test_an_event_admitted_here_is_handled_as_parsed_not_parsed_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its row is claimed moments later: the event admitted is handed over as it was
    (no JSON parse of the row); one stored by another process (or identity) is parsed."""
    handled: list[InboundEvent] = []

    async def handler(e: InboundEvent) -> tuple[InboxState, str]:
        handled.append(e)
        return InboxState.DONE, "handled"

    parsed: list[str] = []
    real_event_of = dispatcher_module._event_of

    def counting(item: InboxItem) -> InboundEvent | None:
        parsed.append(item.event_id)
        return real_event_of(item)

    monkeypatch.setattr(dispatcher_module, "_event_of", counting)
    dispatcher = make_dispatcher(store, handler)
    mine = event(ROOM, ALICE, "admitted here")
    # Another process admitted this one, as another of our identities.
    theirs = event(ROOM, ALICE, "admitted elsewhere", received_by=CODER_USER)
    other = make_dispatcher(store)
    await other.admit(CODER_USER, [theirs])
    await dispatcher.admit(ROUTER, [mine])
    # The same event, as our router saw it: already in the inbox, nothing new stored.
    seen_here = event(ROOM, ALICE, "admitted elsewhere", event_id=theirs.event_id)
    assert seen_here.received_by == ROUTER
    await dispatcher.admit(ROUTER, [seen_here])
    worker = await run_worker(dispatcher)
    try:
        await eventually(lambda: state_is(store, theirs.event_id, InboxState.DONE))
        await eventually(lambda: state_is(store, mine.event_id, InboxState.DONE))
    finally:
        await stop(worker)

    assert parsed == [theirs.event_id], "only the row stored by the other was parsed"
    by_id = {e.event_id: e for e in handled}
    assert by_id[mine.event_id] is mine
    assert by_id[theirs.event_id].received_by == CODER_USER  # as its row says
    assert by_id[theirs.event_id] == theirs
