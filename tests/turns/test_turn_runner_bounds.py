"""The one turn pipeline on a fake homeserver and a real SQLite store: its bounds
(deadline, reply cap, per-sender slots), typing only when slow, attempts and stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.gateway.helpers import (
    ALICE,
    BOB,
    CAROL,
    CODER,
    ScriptedBackend,
    eventually,
    open_store,
    sample,
)
from tests.turns.test_turn_runner import rig_with

from salon import responses
from salon.ids import AgentId
from salon.store import Store
from salon.store.records import TurnState
from salon.turns.slots import SlotLimits
from salon.turns.spec import TurnPolicy
from salon.turns.stream import StreamLimits

STOPPED = responses.text("reply_stopped", "en")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


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
