"""The turn pipeline recovering from what is not the turn's fault: a busy store, a
shutdown or `!stop` while the reply waits out an outage, a second kill during a re-run,
a revoked access token (a fake homeserver and a real SQLite store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.helpers import CODER, ScriptedBackend, TurnRig, eventually, open_store

from salon import responses
from salon._exceptions import StoreError, UnknownTokenError
from salon.store import Store
from salon.store.records import TurnState
from salon.turns.spec import Outcome, OutcomeState
from salon.turns.stream import StreamLimits

LOCKED = "store write failed: database is locked"
STOPPED = responses.text("reply_stopped", "en")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


def fail_once(real: Callable[..., Awaitable[Any]], failed: list[str]) -> Callable[..., Any]:
    """``real``, except that its first call raises a transient store error."""

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(LOCKED)
            raise StoreError(LOCKED)
        return await real(*args, **kwargs)

    return flaky


async def sending_waits(rig: TurnRig, sends_before: int = 0) -> None:
    """Until the backend has answered and the reply's send is failing (an outage)."""
    await eventually(lambda: rig.backend.finished >= 1, what="the backend to finish")
    await eventually(
        lambda: len(rig.agent_api.calls_to("send_event")) > sends_before + 1,
        what="the reply's send to be retried",
    )


# --- a busy store inside a turn ---------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        "turns.start",
        "turns.set_output",
        "turns.finish",
        "runtime.record",
        "prepare",
    ],
)
async def test_transient_store_error_inside_a_turn_runs_it_again(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # Two chunks apart: the first one is shown as a message, so the outcome is stored
    # (set_output) before the final edit.
    backend = ScriptedBackend(chunks=("Hello ", "Alice"), delay=0.15)
    rig = await TurnRig.start(store, tmp_path, backend)
    spec = await rig.message("hello coder")
    failed: list[str] = []
    owner: Any
    if where == "runtime.record":
        owner, name = rig.runner.agents[CODER], "record"
    elif where == "prepare":  # reading the session history while preparing the request
        owner, name = store.sessions, "messages"
    else:
        owner, name = store.turns, where.split(".")[1]
    monkeypatch.setattr(owner, name, fail_once(getattr(owner, name), failed))

    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    assert failed == [LOCKED], f"{where} was not reached"
    assert record.state is TurnState.REPLIED, "not stranded, not failed"
    assert record.error is None
    assert record.attempts == 1, "the store's trouble does not spend an attempt"
    replies = rig.replies()
    assert len(replies) == 1
    assert record.reply_event_id == replies[0]["event_id"]
    assert rig.shown(replies[0]["event_id"]) == "Hello Alice"
    assert not [e for e in rig.agent_events() if e["content"].get("msgtype") == "m.notice"]
    history = await store.sessions.messages(spec.session_key, CODER)
    assert [(m.role, m.content) for m in history] == [
        ("user", "hello coder"),
        ("assistant", "Hello Alice"),
    ]
    assert not rig.in_flight()


# --- shutdown while the reply waits out an outage --------------------------------------


async def test_shutdown_while_sending_keeps_the_outcome_and_the_attempt(
    store: Store, tmp_path: Path
) -> None:
    rig = await TurnRig.start(store, tmp_path, ScriptedBackend(chunks=("the answer",)))
    spec = await rig.message("question")
    rig.hs.down = True

    # Four clean shutdowns (SIGTERM) while the homeserver is down and the reply is due.
    for restart in range(4):
        runner = rig.runner = rig.new_runner()
        sends = len(rig.agent_api.calls_to("send_event"))
        if restart == 0:
            await runner.submit(spec)
        else:
            assert await runner.resume_unfinished() == 1
        await sending_waits(rig, sends)
        await runner.stop()

        record = await rig.turn(spec)
        assert record.state is TurnState.ADMITTED, f"restart {restart}: left for the next start"
        assert record.attempts == 0, f"restart {restart}: the attempt was given back"
        assert record.output is not None
        assert Outcome.from_json(record.output) == Outcome(OutcomeState.REPLIED, "the answer")
        assert rig.backend.calls == 1, "the stored outcome is sent, the backend not run again"

    rig.hs.down = False
    rig.runner = rig.new_runner()
    assert await rig.runner.resume_unfinished() == 1
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    assert record.error is None
    assert record.attempts == 1
    assert rig.backend.calls == 1
    assert len(rig.replies()) == 1
    assert rig.shown(rig.replies()[0]["event_id"]) == "the answer"
    assert not any("gave up" in body for body in rig.bodies())


# --- `!stop` once the outcome is decided --------------------------------------------------


async def test_stop_while_the_decided_outcome_is_sent_does_not_cancel_it(
    store: Store, tmp_path: Path
) -> None:
    rig = await TurnRig.start(store, tmp_path, ScriptedBackend(chunks=("the answer",)))
    spec = await rig.message("question")
    rig.hs.down = True
    await rig.runner.submit(spec)
    await sending_waits(rig)

    rig.runner.stop_in_room(rig.room)  # `!stop` comes too late: the answer is decided
    await asyncio.sleep(0.1)
    assert rig.in_flight() == [spec.key], "still sending"
    assert (await rig.turn(spec)).state is TurnState.RUNNING
    rig.hs.down = False
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    assert record.error is None
    assert len(rig.replies()) == 1
    assert rig.shown(rig.replies()[0]["event_id"]) == "the answer"
    assert not any(STOPPED in body for body in rig.bodies())
    assert rig.backend.calls == 1


# --- two kills: a re-run's whole reply, killed again before its row closed --------------


async def test_rerun_killed_after_its_whole_reply_is_resent_with_the_same_text(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = await TurnRig.start(store, tmp_path, ScriptedBackend(chunks=("FAST whole reply",)))
    spec = await rig.message("hello")
    # Run 1 was killed while the backend was thinking: nothing was sent.
    await store.turns.admit(
        spec.turn_id, CODER, spec.room_id, kind=spec.kind.value, spec=spec.to_json()
    )
    await store.turns.start(spec.turn_id, CODER)

    # Run 2 (a re-run) gets its reply whole: the first message and its final edit are
    # sent, then the process dies before the ledger closes the row.
    hang = asyncio.Event()

    async def stuck(*args: Any, **kwargs: Any) -> None:
        await hang.wait()

    monkeypatch.setattr(store.turns, "finish", stuck)
    run2 = rig.runner = rig.new_runner()
    await run2.resume_unfinished()
    await eventually(
        lambda: any("m.new_content" in e["content"] for e in rig.agent_events()),
        what="run 2's final edit",
    )
    await run2.stop()  # stands for kill -9: the row stays running
    monkeypatch.undo()
    assert (await rig.turn(spec)).state is TurnState.RUNNING

    # Run 3 would stream a different answer, with in-between edits.
    slow = ScriptedBackend(chunks=("SLOW ", "part ", "two ", "three ", "done."), delay=0.15)
    rig.runner = rig.new_runner(backend=slow, limits=StreamLimits(edit_interval_s=0.1, max_edits=3))
    await rig.runner.resume_unfinished()
    record = await rig.closed(spec, timeout=3)

    assert record.state is TurnState.REPLIED
    replies = rig.replies()
    assert len(replies) == 1
    assert rig.shown(replies[0]["event_id"]) == "FAST whole reply", "the newest version is final"
    assert slow.calls == 0, "run 3 re-sends run 2's outcome"
    assert set(rig.bodies()) == {"FAST whole reply"}


# --- a revoked access token -----------------------------------------------------------------


async def test_unknown_token_on_the_reply_is_waited_out(store: Store, tmp_path: Path) -> None:
    rig = await TurnRig.start(store, tmp_path, ScriptedBackend(chunks=("the answer",)))
    spec = await rig.message("question")
    # The token was revoked; the sync loop logs in again and the same handle works later.
    revoked = UnknownTokenError("Invalid access token", http_status=401, errcode="M_UNKNOWN_TOKEN")
    rig.agent_api.fail("send_event", revoked, times=3)

    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    assert record.error is None
    sends = rig.agent_api.calls_to("send_event")
    assert len(sends) == 4
    assert len({s["txn_id"] for s in sends}) == 1, "the same reply, resent"
    assert len(rig.agent_events()) == 1
    assert rig.shown(rig.replies()[0]["event_id"]) == "the answer"
    assert rig.backend.calls == 1
