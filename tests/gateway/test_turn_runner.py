"""The one turn pipeline on a fake homeserver and a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.helpers import (
    ALICE,
    BOB,
    CAROL,
    CODER,
    ScriptedBackend,
    TurnRig,
    eventually,
    open_store,
    sample,
)

from salon import responses
from salon._exceptions import MatrixConnectionError
from salon.gateway.replies import txn_id
from salon.gateway.slots import SlotLimits
from salon.gateway.stream import StreamLimits
from salon.gateway.turns import TurnPolicy
from salon.gateway.turnspec import Outcome, OutcomeState
from salon.ids import AgentId
from salon.store import Store
from salon.store.records import TurnState

STOPPED = responses.text("reply_stopped", "en")


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


# --- bounds ------------------------------------------------------------------------


async def test_deadline_ends_the_turn_with_a_notice(store: Store, tmp_path: Path) -> None:
    before = sample("salon_turn_deadlines_total", agent="coder")
    rig = await rig_with(
        store,
        tmp_path,
        backend=ScriptedBackend(first_delay=5.0),
        policy=TurnPolicy(deadline_s=0.2),
    )
    spec = await rig.message()

    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    assert record.state is TurnState.FAILED
    assert record.error == "deadline"
    assert sample("salon_turn_deadlines_total", agent="coder") == before + 1
    notices = [e for e in rig.agent_events() if e["content"]["msgtype"] == "m.notice"]
    assert len(notices) == 1
    assert "ran out of time" in notices[0]["content"]["body"]
    assert rig.backend.finished == 0


async def test_reply_is_cut_at_the_reply_cap(store: Store, tmp_path: Path) -> None:
    rig = await rig_with(
        store,
        tmp_path,
        backend=ScriptedBackend(chunks=["x" * 100] * 100, delay=0.001),
        limits=StreamLimits(max_reply_chars=100),
    )
    spec = await rig.message()

    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    text = rig.shown(rig.replies()[0]["event_id"])
    assert text.startswith("x" * 100)
    assert not text.startswith("x" * 101)
    assert "cut at 100" in text
    assert len(text) < 150
    assert rig.backend.finished == 0, "the backend was stopped at the cap"
    assert rig.backend.chunks_sent < 100


@pytest.mark.parametrize(
    ("senders", "expected"),
    [((ALICE, ALICE, ALICE), 1), ((ALICE, BOB, CAROL), 3)],
    ids=["same-sender", "three-senders"],
)
async def test_per_sender_slots(
    store: Store, tmp_path: Path, senders: tuple[str, ...], expected: int
) -> None:
    rig = await rig_with(
        store,
        tmp_path,
        backend=ScriptedBackend(chunks=("ok",), hold=0.15),
        slot_limits=SlotLimits(per_sender=1),
    )
    specs = [await rig.message(f"m{i}", sender=s) for i, s in enumerate(senders)]  # type: ignore[arg-type]

    for spec in specs:
        await rig.runner.submit(spec)
    for spec in specs:
        assert (await rig.closed(spec)).state is TurnState.REPLIED

    assert rig.backend.calls == 3
    assert rig.backend.max_running == expected


# --- typing and busy only when slow -----------------------------------------------------


async def test_fast_path_sends_no_typing_and_reports_nothing_slow(
    store: Store, tmp_path: Path
) -> None:
    rig = await rig_with(store, tmp_path, backend=ScriptedBackend(chunks=("quick",)))
    slow: list[AgentId] = []
    rig.runner.on_slow = slow.append
    spec = await rig.message()
    rig.agent_api.calls.clear()  # the join when the room was set up

    await rig.runner.submit(spec)
    await rig.closed(spec)
    await asyncio.sleep(rig.runner.policy.typing_after_s + 0.1)  # nothing may come late

    assert rig.agent_api.calls_to("set_typing") == []
    assert slow == []
    assert [name for name, _ in rig.agent_api.calls] == ["send_event"]


async def test_slow_first_chunk_gets_typing_and_one_slow_signal(
    store: Store, tmp_path: Path
) -> None:
    rig = await rig_with(
        store,
        tmp_path,
        backend=ScriptedBackend(chunks=("slow answer",), first_delay=1.0),
        policy=TurnPolicy(typing_after_s=0.3),
    )
    slow: list[AgentId] = []
    rig.runner.on_slow = slow.append
    spec = await rig.message()

    await rig.runner.submit(spec)
    await eventually(lambda: rig.agent_api.user_id in rig.hs.typing.get(rig.room, set()))
    assert not rig.agent_events(), "typing shows before the reply"
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    assert slow == [CODER]
    typing = rig.agent_api.calls_to("set_typing")
    assert typing[0]["typing"] is True
    await eventually(lambda: not rig.hs.typing.get(rig.room), what="typing to be cleared")


# --- attempts and stop -----------------------------------------------------------------


async def test_turn_out_of_attempts_gives_up_with_a_notice(store: Store, tmp_path: Path) -> None:
    rig = await rig_with(store, tmp_path)
    spec = await rig.message()
    await store.turns.admit(
        spec.turn_id, CODER, spec.room_id, kind=spec.kind.value, spec=spec.to_json()
    )
    for _ in range(rig.runner.policy.max_attempts):  # each run took the process down
        await store.turns.start(spec.turn_id, CODER)
    assert (await rig.turn(spec)).attempts == rig.runner.policy.max_attempts

    await rig.runner.resume_unfinished()
    record = await rig.closed(spec)

    assert record.state is TurnState.FAILED
    assert rig.backend.calls == 0
    bodies = rig.bodies()
    assert len(bodies) == 1
    assert "gave up" in bodies[0]
    assert rig.agent_events()[0]["content"]["msgtype"] == "m.notice"


async def test_stop_in_room_stops_a_slow_stream(store: Store, tmp_path: Path) -> None:
    rig = await rig_with(
        store, tmp_path, backend=ScriptedBackend(chunks=("partial answer",), hold=10.0)
    )
    spec = await rig.message()

    await rig.runner.submit(spec)
    await eventually(lambda: bool(rig.replies()), what="the first chunk to be shown")
    assert rig.runner.stop_in_room(rig.room) == 1
    record = await rig.closed(spec)

    assert record.state is TurnState.STOPPED
    first = rig.replies()[0]["event_id"]
    shown = rig.shown(first)
    assert shown.startswith("partial answer")
    assert shown.endswith(STOPPED)
    assert rig.backend.finished == 0
    assert rig.runner.stop_in_room(rig.room) == 0, "nothing left to stop"


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


async def test_stop_of_a_queued_turn_closes_it(store: Store, tmp_path: Path) -> None:
    rig = await rig_with(
        store,
        tmp_path,
        backend=ScriptedBackend(chunks=("partial",), hold=10.0),
        slot_limits=SlotLimits(per_sender=1),
    )
    running, queued = await rig.message("first"), await rig.message("second")
    await rig.runner.submit(running)
    await rig.runner.submit(queued)
    await eventually(lambda: bool(rig.replies()), what="the first turn's reply")

    assert rig.runner.stop_in_room(rig.room) == 2
    await rig.closed(running)
    await eventually(lambda: not rig.in_flight(), what="both turns to end")

    assert (await rig.turn(queued)).state is TurnState.STOPPED
    assert await rig.new_runner().resume_unfinished() == 0
