"""Who a delegation's result goes to when its asker is gone or never waited: a waiter
given up on goes away, a result a closing turn left behind is reported when it closes,
and `!delegate` (no waiting) hands a transient failure back to the inbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.coordination.test_delegation_manager import ORIGIN_EVENT, TASK, World
from tests.gateway.helpers import (
    CODER,
    CODER_USER,
    WRITER,
    WRITER_USER,
    ScriptedBackend,
    TurnRig,
    event,
    eventually,
    make_config,
    make_roster,
    now_ms,
    open_store,
)

from salon._exceptions import MatrixConnectionError
from salon.agents.context import lending_context
from salon.agents.tools import DelegationOutcome
from salon.coordination.heartbeat import AGENT_STATE
from salon.coordination.protocol import REQUEST, STATUS
from salon.coordination.records import stable_id
from salon.gateway.delegated_turns import Coordinator
from salon.store import Store
from salon.store.delegations import DelegationPhase
from salon.store.records import TurnState
from salon.turns.spec import Outcome, OutcomeState, TurnKind

DELEGATION_ID = stable_id(ORIGIN_EVENT, "coder", "writer", TASK)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


@pytest.fixture
async def world(store: Store) -> World:
    return await World.make(store)


async def waiting(world: World) -> None:
    """Until the request is out and its caller waits for the answer."""
    await eventually(lambda: bool(world.in_writer_room(REQUEST)), what="the request")
    await asyncio.sleep(0.05)


# --- a waiter given up on ---------------------------------------------------------------


async def test_result_for_a_cancelled_sole_waiter_is_reported(world: World) -> None:
    manager = world.manager()
    call = asyncio.ensure_future(
        manager.delegate(
            "coder", "writer", TASK, origin_room=world.origin_room, origin_event=ORIGIN_EVENT
        )
    )
    await waiting(world)
    # The delegating turn is stopped (`!stop`, its deadline): its tool call is cancelled
    # and the turn closes.
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    await world.store.turns.admit(ORIGIN_EVENT, "coder", world.origin_room)
    await world.store.turns.start(ORIGIN_EVENT, "coder")
    await world.store.turns.finish(ORIGIN_EVENT, "coder", TurnState.STOPPED)

    await manager.on_status(
        world.status(DELEGATION_ID, WRITER_USER, state="completed", result="the summary")
    )

    assert [(r.id, o) for r, o in world.reports] == [
        (DELEGATION_ID, DelegationOutcome(True, "the summary"))
    ], "reported, not handed to a waiter nobody reads"
    record = await world.store.delegations.get(DELEGATION_ID)
    assert record is not None and record.state is DelegationPhase.COMPLETED
    assert not record.reinjected, "delivered once the report turn closes"


async def test_cancelling_one_of_two_waiters_leaves_the_other_the_result(world: World) -> None:
    manager = world.manager()
    calls = [
        asyncio.ensure_future(
            manager.delegate(
                "coder", "writer", TASK, origin_room=world.origin_room, origin_event=ORIGIN_EVENT
            )
        )
        for _ in range(2)
    ]
    await waiting(world)
    calls[0].cancel()
    await asyncio.gather(calls[0], return_exceptions=True)

    await manager.on_status(
        world.status(DELEGATION_ID, WRITER_USER, state="completed", result="the summary")
    )

    assert await asyncio.wait_for(calls[1], 10.0) == DelegationOutcome(True, "the summary")
    assert world.reports == []
    record = await world.store.delegations.get(DELEGATION_ID)
    assert record is not None and record.reinjected, "handed back to the waiting call"
    assert len(world.in_writer_room(REQUEST)) == 1


# --- `!delegate`: nothing waits, and the inbox must not be held up -----------------------


async def test_a_target_hosted_here_is_online_without_reading_its_heartbeat(
    world: World,
) -> None:
    """Right after a start the first heartbeats wait behind the replies: a hosted
    target's heartbeat is not read (it answered [OFFLINE] until it was out)."""
    manager = world.manager()
    world.coder.fail("get_state_event", MatrixConnectionError("must not be read"))
    sent = await asyncio.wait_for(
        manager.delegate(
            "coder",
            "writer",
            TASK,
            origin_room=world.origin_room,
            origin_event=ORIGIN_EVENT,
            wait=False,
        ),
        1.0,
    )
    assert sent == DelegationOutcome(True, DELEGATION_ID)


async def test_delegate_without_waiting_raises_a_transient_error_and_a_retry_sends(
    world: World,
) -> None:
    manager = world.manager()
    world.coder.fail("send_event", MatrixConnectionError("homeserver unreachable"))

    def ask() -> Any:
        return manager.delegate(
            "coder",
            "writer",
            TASK,
            origin_room=world.origin_room,
            origin_event=ORIGIN_EVENT,
            wait=False,
        )

    # Raised at once (not waited out): the inbox defers its row and tries it later.
    with pytest.raises(MatrixConnectionError):
        await asyncio.wait_for(ask(), 10.0)
    assert world.in_writer_room(REQUEST) == []
    record = await world.store.delegations.get(DELEGATION_ID)
    assert record is None or record.state is DelegationPhase.PENDING

    # The homeserver is back; the inbox tries the row again.
    sent = await asyncio.wait_for(ask(), 10.0)

    assert sent == DelegationOutcome(True, DELEGATION_ID)
    requests = world.in_writer_room(REQUEST)
    assert [r["content"]["id"] for r in requests] == [DELEGATION_ID], "sent, once"
    record = await world.store.delegations.get(DELEGATION_ID)
    assert record is not None
    assert record.state is DelegationPhase.SENT
    assert record.request_event_id == requests[0]["event_id"]


# --- a result owed to a turn that closed without taking it --------------------------------


async def test_result_left_behind_by_a_closing_turn_is_reported_when_it_closes(
    store: Store, tmp_path: Path
) -> None:
    backend = ScriptedBackend(chunks=("an answer that asks nobody",))
    rig = await TurnRig.start(store, tmp_path, backend)
    writer = rig.hs.api(WRITER_USER)
    writer_room = await writer.create_room(alias_localpart="salon-writer", invite=[CODER_USER])
    online = {"v": 1, "status": "online", "heartbeat_ts": now_ms(), "ttl_s": 300}
    await writer.send_state(writer_room, AGENT_STATE, online, WRITER_USER)
    coordinator = Coordinator(
        make_config(),
        store,
        roster=make_roster(),
        agent_apis={CODER: rig.agent_api, WRITER: writer},
        agent_rooms={WRITER: writer_room},
        runner=rig.runner,
    )
    manager = coordinator.manager
    spec = await rig.message("summarise the design, please")
    # Run 1 delegated, then the process died: the turn is still open.
    await store.turns.admit(
        spec.turn_id, CODER, spec.room_id, kind=spec.kind.value, spec=spec.to_json()
    )
    await store.turns.start(spec.turn_id, CODER)
    sent = await manager.delegate(
        "coder", "writer", TASK, origin_room=rig.room, origin_event=spec.turn_id, wait=False
    )
    delegation_id = sent.text
    done = event(
        writer_room,
        WRITER_USER,
        event_type=STATUS,
        content={"v": 1, "id": delegation_id, "state": "completed", "result": "the summary"},
        received_by=CODER_USER,
    )
    await coordinator.on_status(done)
    assert await store.turns.get(f"report:{delegation_id}", CODER) is None, (
        "the open turn's re-run may still collect it"
    )

    # The re-run asks differently (here: not at all) and closes.
    assert await rig.runner.resume_unfinished() == 1
    assert (await rig.closed(spec)).state is TurnState.REPLIED

    async def reported() -> bool:
        turn = await store.turns.get(f"report:{delegation_id}", CODER)
        return turn is not None and not turn.open

    await eventually(reported, what="the left-behind result reported")
    report = await store.turns.get(f"report:{delegation_id}", CODER)
    assert report is not None
    assert report.state is TurnState.REPLIED and report.kind == TurnKind.REPORT.value
    assert "the summary" in backend.requests[-1].text
    record = await store.delegations.get(delegation_id)
    assert record is not None and record.reinjected

    # Once: a replayed status and the next start's sweep report nothing more.
    await coordinator.on_status(done)
    await manager.deliver_undelivered()
    await eventually(lambda: not rig.in_flight(), what="nothing running")
    count = await store.db.fetchval("SELECT COUNT(*) FROM turns WHERE kind = 'report'")
    assert count == 1
    assert backend.calls == 2, "the re-run and one report turn"


async def test_a_turn_that_asked_nothing_reads_no_delegations_as_it_closes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing can be owed to a turn of an agent that may delegate to nobody, nor to a
    first run that delegated nothing: no store read as it closes (one a turn saved).
    A turn that delegated, or a re-run (an earlier attempt may have), reads."""
    rig = await TurnRig.start(store, tmp_path, ScriptedBackend(chunks=("hi",)))
    coordinator = Coordinator(
        make_config(),
        store,
        roster=make_roster(),
        agent_apis={CODER: rig.agent_api},
        agent_rooms={},
        runner=rig.runner,
    )
    reads: list[str] = []

    async def undelivered_from(origin_event: str, from_agent: str) -> list[Any]:
        reads.append(from_agent)
        return []

    monkeypatch.setattr(store.delegations, "undelivered_from", undelivered_from)
    spec = await rig.message("hello")
    closed = Outcome(OutcomeState.REPLIED, "hi")
    coordinator.manager.can_delegate_to = {CODER: []}
    await coordinator.turn_closed(spec, closed)
    assert reads == []
    coordinator.manager.can_delegate_to = {CODER: [WRITER]}
    await coordinator.turn_closed(spec, closed)
    assert reads == [], "a first run that asked nothing"
    # The turn asked (its delegator is told before each delegation).
    delegator = await coordinator.delegator_for(spec)
    assert delegator is not None and delegator.on_ask is not None
    delegator.on_ask()
    await coordinator.turn_closed(spec, closed)
    assert reads == [CODER]
    await coordinator.turn_closed(spec, closed)
    assert reads == [CODER], "told once, read once"
    # A re-run: the attempt before it (a crashed process's) may have asked.
    rig.runner._reruns.add(spec.key)
    await coordinator.turn_closed(spec, closed)
    assert reads == [CODER, CODER]


# --- the waiting turn's slots ----------------------------------------------------------


async def test_a_turn_waiting_for_a_delegation_lends_its_slots(world: World) -> None:
    """While the call waits for the result, the turn's slots are lent back (the runner's
    hook); they are taken again once the result is in."""
    manager = world.manager()
    log: list[str] = []

    @asynccontextmanager
    async def lend() -> AsyncIterator[None]:
        log.append("lent")
        yield
        log.append("back")

    async def turn() -> DelegationOutcome:
        with lending_context(lend):
            return await manager.delegate(
                "coder", "writer", TASK, origin_room=world.origin_room, origin_event=ORIGIN_EVENT
            )

    call = asyncio.ensure_future(turn())
    await waiting(world)
    assert log == ["lent"], "the slots are free while the writer works"
    await manager.on_status(
        world.status(DELEGATION_ID, WRITER_USER, state="completed", result="the summary")
    )
    assert await asyncio.wait_for(call, 10.0) == DelegationOutcome(True, "the summary")
    assert log == ["lent", "back"]
