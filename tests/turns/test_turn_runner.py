"""The one turn pipeline on a fake homeserver and a real SQLite store: the plain path,
homeserver outages and re-runs after a crash. Its bounds, typing, attempts and
stop are test_turn_runner_bounds.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.helpers import CODER, ScriptedBackend, TurnRig, eventually, open_store

from salon._exceptions import MatrixConnectionError
from salon.store import Store
from salon.store.records import TurnState
from salon.turns.replies import txn_id
from salon.turns.spec import Outcome, OutcomeState, TurnPolicy


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


async def rig_with(
    store: Store, tmp_path: Path, backend: ScriptedBackend | None = None, **options: Any
) -> TurnRig:
    """A room with the coder in it and a runner (``options`` go to the runner)."""
    return await TurnRig.start(store, tmp_path, backend, **options)


# --- the plain path -----------------------------------------------------------------


async def test_message_turn_replies_once_and_records_the_session(
    store: Store, tmp_path: Path
) -> None:
    rig = await rig_with(store, tmp_path, backend=ScriptedBackend(chunks=("Hi ", "Alice")))
    spec = await rig.message("hello coder")

    assert await rig.runner.submit(spec) is True
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    assert record.attempts == 1
    replies = rig.replies()
    assert len(replies) == 1
    assert record.reply_event_id == replies[0]["event_id"]
    assert rig.shown(replies[0]["event_id"]) == "Hi Alice"
    assert replies[0]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == spec.turn_id
    assert rig.backend.calls == 1
    history = await store.sessions.messages(spec.session_key, CODER)
    assert [(m.role, m.content, m.turn_id) for m in history] == [
        ("user", "hello coder", spec.turn_id),
        ("assistant", "Hi Alice", spec.turn_id),
    ]
    # Submitting the same turn again (a replayed admission) changes nothing.
    assert await rig.runner.submit(spec) is False
    await eventually(lambda: not rig.in_flight(), what="replayed turn to end")
    assert len(rig.agent_events()) == 1 and rig.backend.calls == 1


# --- homeserver outages ------------------------------------------------------------------


async def test_homeserver_down_while_the_reply_is_due_is_waited_out(
    store: Store, tmp_path: Path
) -> None:
    rig = await rig_with(store, tmp_path, backend=ScriptedBackend(chunks=("the answer",)))
    spec = await rig.message("question")

    rig.hs.down = True
    await rig.runner.submit(spec)
    # The backend has answered and the reply is being retried against a dead server.
    await eventually(lambda: rig.backend.finished == 1, what="backend to finish")
    await asyncio.sleep(0.5)
    record = await rig.turn(spec)
    assert record.open, "the turn must wait for the homeserver, not give up"
    assert rig.agent_api.calls_to("send_event"), "it did try to send"
    rig.hs.down = False

    record = await rig.closed(spec)
    assert record.state is TurnState.REPLIED
    assert record.attempts == 1
    assert rig.backend.calls == 1
    assert len(rig.agent_events()) == 1
    assert rig.shown(rig.replies()[0]["event_id"]) == "the answer"
    assert not any("gave up" in body for body in rig.bodies())


async def test_lost_answer_to_a_send_does_not_post_a_second_event(
    store: Store, tmp_path: Path
) -> None:
    rig = await rig_with(store, tmp_path, backend=ScriptedBackend(chunks=("only once",)))
    # The homeserver stores the reply, then the connection drops before the answer.
    rig.agent_api.fail(
        "send_event", MatrixConnectionError("reset by peer"), times=1, after_effect=True
    )
    spec = await rig.message()

    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    sends = rig.agent_api.calls_to("send_event")
    assert len(sends) == 2, "the lost send was retried"
    assert sends[0]["txn_id"] == sends[1]["txn_id"]
    assert len(rig.agent_events()) == 1
    assert record.state is TurnState.REPLIED
    assert record.reply_event_id == rig.agent_events()[0]["event_id"]
    assert rig.backend.calls == 1


# --- re-runs after a crash ------------------------------------------------------------------


async def test_stored_output_is_resent_without_asking_the_backend(
    store: Store, tmp_path: Path
) -> None:
    rig = await rig_with(store, tmp_path)
    spec = await rig.message("what is 6 x 7?")
    # The crashed process decided the outcome and stored it, then died before sending.
    await store.turns.admit(
        spec.turn_id, CODER, spec.room_id, kind=spec.kind.value, spec=spec.to_json()
    )
    assert await store.turns.start(spec.turn_id, CODER) is not None
    stored = Outcome(OutcomeState.REPLIED, "forty-two, stored before the crash")
    await store.turns.set_output(spec.turn_id, CODER, stored.to_json())

    backend = ScriptedBackend(chunks=("a different answer",))
    rig.runner = rig.new_runner(backend=backend)
    assert await rig.runner.resume_unfinished() == 1
    record = await rig.closed(spec)

    assert backend.calls == 0
    assert record.state is TurnState.REPLIED
    replies = rig.replies()
    assert len(replies) == 1
    assert record.reply_event_id == replies[0]["event_id"]
    assert rig.shown(replies[0]["event_id"]) == stored.text
    assert rig.agent_events()[-1]["content"].get("m.new_content", {}).get("body") == stored.text


async def test_rerun_with_a_first_message_ends_on_a_final_edit(
    store: Store, tmp_path: Path
) -> None:
    rig = await rig_with(store, tmp_path)
    spec = await rig.message("write me a poem")
    # The crashed run had sent its first chunk as a message and recorded its id.
    await store.turns.admit(
        spec.turn_id, CODER, spec.room_id, kind=spec.kind.value, spec=spec.to_json()
    )
    await store.turns.start(spec.turn_id, CODER)
    first = await rig.agent_api.send_event(
        rig.room,
        "m.room.message",
        {"msgtype": "m.text", "body": "Roses are"},
        txn_id=txn_id(spec.turn_id, CODER, 0),
    )
    await store.turns.set_reply(spec.turn_id, CODER, first)
    # ... and one in-between edit, before it died.
    await rig.agent_api.send_event(
        rig.room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* Roses are red,",
            "m.new_content": {"msgtype": "m.text", "body": "Roses are red,"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": first},
        },
        txn_id=txn_id(spec.turn_id, CODER, "edit-1"),
    )

    final = "Roses are red, violets are blue"
    backend = ScriptedBackend(chunks=("Roses are red, ", "violets are blue"), delay=0.02)
    rig.runner = rig.new_runner(backend=backend)
    await rig.runner.resume_unfinished()
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    assert record.attempts == 2
    assert record.reply_event_id == first
    assert [e["event_id"] for e in rig.replies()] == [first], "no second reply message"
    newest = rig.hs.messages_in(rig.room)[-1]
    assert newest["sender"] == rig.agent_api.user_id
    assert newest["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": first}
    assert newest["content"]["m.new_content"]["body"] == final
    assert rig.shown(first) == final


async def test_a_reply_sent_whole_is_recorded_by_the_close_alone(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One write fewer a message: the reply id of a reply that is one final message
    is written when the turn closes, not also when it is sent."""
    rig = await rig_with(store, tmp_path, backend=ScriptedBackend(chunks=("all at once",)))
    spec = await rig.message("hello")
    early: list[str] = []
    real = store.turns.set_reply

    async def set_reply(event_id: str, agent_id: str, reply_event_id: str) -> None:
        early.append(reply_event_id)
        await real(event_id, agent_id, reply_event_id)

    monkeypatch.setattr(store.turns, "set_reply", set_reply)
    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    assert early == []
    [reply] = rig.replies()
    assert record.reply_event_id == reply["event_id"]


async def test_rerun_after_a_whole_reply_was_sent_but_not_recorded_sends_no_second(
    store: Store, tmp_path: Path
) -> None:
    """The crash that window leaves: the whole reply sent, the ledger knowing no reply
    id. The re-run's first send is the same event (its transaction id), made final."""
    rig = await rig_with(store, tmp_path)
    spec = await rig.message("what is 6 x 7?")
    await store.turns.admit(
        spec.turn_id, CODER, spec.room_id, kind=spec.kind.value, spec=spec.to_json()
    )
    await store.turns.start(spec.turn_id, CODER)
    first = await rig.agent_api.send_event(
        rig.room,
        "m.room.message",
        {"msgtype": "m.text", "body": "forty-two"},
        txn_id=txn_id(spec.turn_id, CODER, 0),
    )

    rig.runner = rig.new_runner(backend=ScriptedBackend(chunks=("42",)))
    await rig.runner.resume_unfinished()
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED and record.attempts == 2
    assert record.reply_event_id == first
    assert [e["event_id"] for e in rig.replies()] == [first], "no second reply message"
    assert rig.shown(first) == "42"


# --- defects found by these tests, fixed --------------------------------------------


async def test_outage_while_streaming_is_not_charged_to_the_deadline(
    store: Store, tmp_path: Path
) -> None:
    rig = await rig_with(
        store,
        tmp_path,
        backend=ScriptedBackend(chunks=("one ", "two ", "three"), delay=0.05),
        policy=TurnPolicy(deadline_s=0.4),
    )
    spec = await rig.message()

    rig.hs.down = True
    await rig.runner.submit(spec)
    await eventually(lambda: rig.backend.finished == 1, what="backend to finish")
    await asyncio.sleep(0.6)  # the homeserver stays down past the deadline
    rig.hs.down = False
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    assert rig.shown(rig.replies()[0]["event_id"]) == "one two three"
