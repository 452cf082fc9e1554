"""Delegation on a fake homeserver and a real SQLite store: shared waiters, forged
status events, delivery through a report turn, forged copies of requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.fake_matrix import JSON, FakeHomeserver, FakeMatrixAPI
from tests.gateway.helpers import (
    ALICE,
    CODER_USER,
    WRITER_USER,
    event,
    eventually,
    make_roster,
    now_ms,
    open_store,
    sample,
)

from salon._exceptions import ForbiddenError
from salon.agents.tools import DelegationOutcome
from salon.coordination.delegation import DelegationManager
from salon.coordination.directory import Directory
from salon.coordination.heartbeat import AGENT_STATE
from salon.coordination.inbound import InboundDelegations
from salon.coordination.protocol import REQUEST, STATUS, DelegationRequest, new_request
from salon.coordination.protocol import request_content as wire_request
from salon.coordination.records import stable_id
from salon.ids import RoomId, UserId
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationPhase, DelegationRecord
from salon.store.records import TurnState

TASK = "summarise the design"
ORIGIN_EVENT = "$origin"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


@dataclass
class World:
    """Alice, the coder (who delegates) and the writer (asked), with their rooms."""

    store: Store
    hs: FakeHomeserver
    alice: FakeMatrixAPI
    coder: FakeMatrixAPI
    writer: FakeMatrixAPI
    origin_room: RoomId  # where Alice talks to the coder
    writer_room: RoomId  # the writer's agent room, where requests go
    directory: Directory
    reports: list[tuple[DelegationRecord, DelegationOutcome]] = field(default_factory=list)

    @classmethod
    async def make(cls, store: Store) -> World:
        hs = FakeHomeserver()
        alice, coder, writer = hs.api(ALICE), hs.api(CODER_USER), hs.api(WRITER_USER)
        origin = await alice.create_room(invite=[CODER_USER])
        await coder.join(origin)
        writer_room = await writer.create_room(
            alias_localpart="salon-writer", invite=[CODER_USER, ALICE]
        )
        await alice.join(writer_room)  # a person who can see (and copy) requests
        online = {"v": 1, "status": "online", "heartbeat_ts": now_ms(), "ttl_s": 300}
        await writer.send_state(writer_room, AGENT_STATE, online, WRITER_USER)
        directory = Directory(
            roster=make_roster(),
            apis={"coder": coder, "writer": writer},
            rooms={"writer": writer_room},
        )
        return cls(store, hs, alice, coder, writer, origin, writer_room, directory)

    def manager(self) -> DelegationManager:
        manager = DelegationManager(
            self.store,
            self.directory,
            can_delegate_to={"coder": ["writer"], "writer": []},
            descriptions={"writer": "Writes prose"},
            deadline_s=60,
        )

        async def report(record: DelegationRecord, outcome: DelegationOutcome) -> None:
            self.reports.append((record, outcome))  # a stub: it does not mark anything

        manager.report = report
        return manager

    def in_writer_room(self, event_type: str) -> list[JSON]:
        room = self.hs.room(self.writer_room)
        return [e for _, e in room.timeline if e["type"] == event_type]

    def status(self, delegation_id: str, sender: str, **content: Any) -> Any:
        body = {"v": 1, "id": delegation_id, **content}
        return event(
            self.writer_room,
            sender,
            event_type=STATUS,
            content=body,
            received_by=CODER_USER,
        )


@pytest.fixture
async def world(store: Store) -> World:
    return await World.make(store)


# --- outbound: the delegating side --------------------------------------------------------


async def test_identical_concurrent_delegate_calls_share_one_delegation(world: World) -> None:
    manager = world.manager()
    call = manager.delegate(
        "coder", "writer", TASK, origin_room=world.origin_room, origin_event=ORIGIN_EVENT
    )
    twin = manager.delegate(
        "coder", "writer", TASK, origin_room=world.origin_room, origin_event=ORIGIN_EVENT
    )
    both = asyncio.gather(call, twin)
    delegation_id = stable_id(ORIGIN_EVENT, "coder", "writer", TASK)

    await eventually(lambda: bool(world.in_writer_room(REQUEST)), what="the request")
    await asyncio.sleep(0.05)  # both calls are waiting now
    assert not both.done()
    await manager.on_status(
        world.status(delegation_id, WRITER_USER, state="completed", result="a fine summary")
    )
    outcomes = await asyncio.wait_for(both, 10.0)

    assert outcomes == [DelegationOutcome(True, "a fine summary")] * 2
    requests = world.in_writer_room(REQUEST)
    assert len(requests) == 1
    assert requests[0]["content"]["id"] == delegation_id
    record = await world.store.delegations.get(delegation_id)
    assert record is not None
    assert record.state is DelegationPhase.COMPLETED
    assert record.reinjected, "handed back to the waiting turn"
    assert world.reports == []


async def test_identical_call_after_the_first_is_waiting_shares_its_outcome(
    world: World,
) -> None:
    manager = world.manager()
    first = asyncio.ensure_future(
        manager.delegate("coder", "writer", TASK, origin_event=ORIGIN_EVENT)
    )
    await eventually(lambda: bool(world.in_writer_room(REQUEST)), what="the request")
    second = asyncio.ensure_future(
        manager.delegate("coder", "writer", TASK, origin_event=ORIGIN_EVENT)
    )
    await asyncio.sleep(0.05)
    delegation_id = stable_id(ORIGIN_EVENT, "coder", "writer", TASK)
    await manager.on_status(
        world.status(delegation_id, WRITER_USER, state="failed", error="no time")
    )

    outcomes = await asyncio.wait_for(asyncio.gather(first, second), 10.0)
    assert outcomes == [DelegationOutcome(False, "[FAILED] no time")] * 2
    assert len(world.in_writer_room(REQUEST)) == 1


async def test_status_from_someone_else_than_the_target_is_ignored(world: World) -> None:
    manager = world.manager()
    sent = await manager.delegate("coder", "writer", TASK, origin_event=ORIGIN_EVENT, wait=False)
    assert sent.ok
    delegation_id = sent.text
    before = await world.store.delegations.get(delegation_id)
    forged_before = sample("salon_events_dropped_total", reason="delegation_forged")

    # Alice can post into the writer's room: she claims the task is done.
    await manager.on_status(world.status(delegation_id, ALICE, state="completed", result="lies"))

    assert sample("salon_events_dropped_total", reason="delegation_forged") == forged_before + 1
    after = await world.store.delegations.get(delegation_id)
    assert after == before
    assert after is not None and after.state is DelegationPhase.SENT and after.result is None
    assert world.reports == []
    # The real target's answer still counts.
    await manager.on_status(
        world.status(delegation_id, WRITER_USER, state="completed", result="ok")
    )
    real = await world.store.delegations.get(delegation_id)
    assert real is not None and real.state is DelegationPhase.COMPLETED and real.result == "ok"


async def test_result_with_no_waiting_turn_goes_through_a_report(world: World) -> None:
    manager = world.manager()
    store = world.store
    # The delegating turn has closed (it was a `!delegate`, or a restart intervened).
    await store.turns.admit(ORIGIN_EVENT, "coder", world.origin_room)
    await store.turns.start(ORIGIN_EVENT, "coder")
    await store.turns.finish(ORIGIN_EVENT, "coder", TurnState.REPLIED)
    sent = await manager.delegate(
        "coder",
        "writer",
        TASK,
        origin_room=world.origin_room,
        origin_event=ORIGIN_EVENT,
        wait=False,
    )
    delegation_id = sent.text

    done = world.status(delegation_id, WRITER_USER, state="completed", result="the summary")
    await manager.on_status(done)

    assert len(world.reports) == 1
    reported, outcome = world.reports[0]
    assert reported.id == delegation_id
    assert outcome == DelegationOutcome(True, "the summary")
    record = await store.delegations.get(delegation_id)
    assert record is not None
    assert not record.reinjected, "delivered only once the report turn closes"
    assert [r.id for r in await store.delegations.undelivered()] == [delegation_id]

    # The report turn closes (what the gateway's report_closed does); a replay of the
    # status event then reports nothing more.
    assert await store.delegations.mark_reinjected(delegation_id)
    await manager.on_status(done)
    await manager.deliver_undelivered()
    assert len(world.reports) == 1


async def test_result_while_the_delegating_turn_is_open_waits_for_its_rerun(
    world: World,
) -> None:
    manager = world.manager()
    store = world.store
    # The delegating turn is still open (a crash interrupted it; it will run again).
    await store.turns.admit(ORIGIN_EVENT, "coder", world.origin_room)
    await store.turns.start(ORIGIN_EVENT, "coder")
    sent = await manager.delegate(
        "coder",
        "writer",
        TASK,
        origin_room=world.origin_room,
        origin_event=ORIGIN_EVENT,
        wait=False,
    )

    await manager.on_status(world.status(sent.text, WRITER_USER, state="completed", result="r"))

    assert world.reports == []
    record = await store.delegations.get(sent.text)
    assert record is not None and not record.reinjected
    # The re-run asks the same question and gets the stored result at once.
    outcome = await asyncio.wait_for(
        manager.delegate("coder", "writer", TASK, origin_event=ORIGIN_EVENT), 1.0
    )
    assert outcome == DelegationOutcome(True, "r")
    record = await store.delegations.get(sent.text)
    assert record is not None and record.reinjected


# --- inbound: the asked side --------------------------------------------------------------


@dataclass
class Submitted:
    tasks: list[tuple[DelegationRequest, RoomId]] = field(default_factory=list)

    async def __call__(self, request: DelegationRequest, room: RoomId) -> None:
        self.tasks.append((request, room))


def request_event(world: World, request: DelegationRequest, sender: str, event_id: str) -> Any:
    return event(
        world.writer_room,
        sender,
        event_id=event_id,
        event_type=REQUEST,
        content=wire_request(request),
        received_by=WRITER_USER,
    )


@pytest.mark.parametrize("copier", [ALICE, CODER_USER], ids=["by-a-person", "by-the-delegator"])
async def test_forged_copy_of_a_known_request_is_ignored(world: World, copier: UserId) -> None:
    submitted = Submitted()
    inbound = InboundDelegations(world.store, world.directory, hop_limit=3, submit=submitted)
    request = new_request("coder", "writer", TASK, deadline_ts=now_ms() + 60_000)
    real = request_event(world, request, CODER_USER, "$real-request")

    assert await inbound.on_request(real) == "accepted"
    statuses = world.in_writer_room(STATUS)
    assert [s["content"]["state"] for s in statuses] == ["accepted"]
    stored = await world.store.delegations.get(request.id, direction=DelegationDirection.IN)
    assert stored is not None and stored.request_event_id == "$real-request"
    duplicates = sample("salon_events_dropped_total", reason="delegation_duplicate")

    copy = request_event(world, request, copier, "$copied-request")
    assert await inbound.on_request(copy) == "duplicate"

    assert sample("salon_events_dropped_total", reason="delegation_duplicate") == duplicates + 1
    assert world.in_writer_room(STATUS) == statuses, "no status answers a copy"
    assert await world.store.delegations.get(request.id, direction=DelegationDirection.IN) == stored
    assert len(submitted.tasks) == 1
    # A replay of the real event (a sync replay after a crash) is still idempotent.
    assert await inbound.on_request(real) == "accepted"
    assert len(world.in_writer_room(STATUS)) == 1


# --- defects found by these tests, fixed --------------------------------------------


async def test_identical_calls_both_get_the_failure_when_the_request_cannot_be_sent(
    world: World,
) -> None:
    manager = world.manager()
    world.coder.fail("send_event", ForbiddenError("not allowed", http_status=403))

    outcomes = await asyncio.wait_for(
        asyncio.gather(
            manager.delegate("coder", "writer", TASK, origin_event=ORIGIN_EVENT),
            manager.delegate("coder", "writer", TASK, origin_event=ORIGIN_EVENT),
            return_exceptions=True,
        ),
        1.0,
    )

    assert all(isinstance(o, DelegationOutcome) and not o.ok for o in outcomes), outcomes
