"""Agents leave the other agents' rooms they visited (at start, and once idle there
while running), unless work of theirs will still post there; the owner invites them
again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from tests.fake_matrix import FakeHomeserver, FakeMatrixAPI
from tests.gateway.helpers import CODER, CODER_USER, WRITER, WRITER_USER, open_store, sample

from salon.gateway.visits import VisitEnder, visitors_leave
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.store import Store
from salon.store.records import TurnState


@dataclass
class Two:
    """Two agents, each owning its room, each invited into the other's (a visitor)."""

    store: Store
    hs: FakeHomeserver
    coder: FakeMatrixAPI
    writer: FakeMatrixAPI
    coder_room: RoomId
    writer_room: RoomId

    @property
    def apis(self) -> dict[AgentId, MatrixAPI]:
        return {CODER: cast(MatrixAPI, self.coder), WRITER: cast(MatrixAPI, self.writer)}

    @property
    def rooms(self) -> dict[AgentId, RoomId]:
        return {CODER: self.coder_room, WRITER: self.writer_room}


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[Two]:
    store = await open_store(tmp_path)
    hs = FakeHomeserver("localhost")
    coder, writer = hs.api(CODER_USER), hs.api(WRITER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder", invite=[WRITER_USER])
    writer_room = await writer.create_room(alias_localpart="salon-writer", invite=[CODER_USER])
    yield Two(store, hs, coder, writer, coder_room, writer_room)
    await store.close()


async def test_visitors_leave_except_where_resumed_work_posts(two: Two) -> None:
    await two.writer.join(two.coder_room)
    await two.coder.join(two.writer_room)
    # The writer was mentioned in the coder's room and its turn did not finish.
    await two.store.turns.admit("$asked", WRITER, two.coder_room)

    await visitors_leave(two.apis, two.rooms, two.store)

    # The writer stays where its resumed turn will answer.
    assert two.hs.room(two.coder_room).members[WRITER_USER] == "join"
    # The coder had nothing there: it left and was invited again, to come back on demand.
    assert two.hs.room(two.writer_room).members[CODER_USER] == "invite"
    assert two.hs.room(two.writer_room).members[WRITER_USER] == "join"


async def test_a_visitor_idle_in_a_room_leaves_while_running(two: Two) -> None:
    store, coder_room, writer_room = two.store, two.coder_room, two.writer_room
    await two.writer.join(coder_room)  # mentioned there: it answered
    await two.coder.join(writer_room)  # it delegated there; the result is not yet reported
    await store.turns.admit("$asked", WRITER, coder_room)
    await store.turns.finish("$asked", WRITER, TurnState.REPLIED)
    await store.turns.admit("$report", CODER, writer_room)
    forgotten: list[str] = []
    visits = VisitEnder(store, two.apis, two.rooms, idle_s=0.3, on_left=forgotten.append)
    before = sample("salon_visits_ended_total", reason="idle")

    # Just seen there, just active there: both stay.
    assert await visits.sweep() == []
    await asyncio.sleep(0.4)

    # Idle past the limit: the writer leaves and is invited again; the coder's
    # unfinished turn keeps it in the writer's room.
    assert await visits.sweep() == [(WRITER, coder_room)]
    assert two.hs.room(coder_room).members[WRITER_USER] == "invite"
    assert two.hs.room(writer_room).members[CODER_USER] == "join"
    assert sample("salon_visits_ended_total", reason="idle") == before + 1
    assert forgotten == [coder_room]  # routing's member cache of the room is dropped

    # Its turn done, the coder leaves once idle too.
    await store.turns.finish("$report", CODER, TurnState.REPLIED)
    assert await visits.sweep() == []  # its turn ended just now
    await asyncio.sleep(0.4)
    assert await visits.sweep() == [(CODER, writer_room)]
    assert two.hs.room(writer_room).members[CODER_USER] == "invite"


async def test_a_visitor_that_just_joined_gets_its_grace(two: Two) -> None:
    visits = VisitEnder(two.store, two.apis, {CODER: two.coder_room}, idle_s=0.3)
    assert await visits.sweep() == []
    await asyncio.sleep(0.4)
    # It joins (mentioned) after a sweep; its turn is not recorded yet: it stays.
    await two.writer.join(two.coder_room)
    assert await visits.sweep() == []
    assert two.hs.room(two.coder_room).members[WRITER_USER] == "join"
    await asyncio.sleep(0.4)
    assert await visits.sweep() == [(WRITER, two.coder_room)]


async def test_a_use_keeps_the_visit_and_waits_for_a_leave_under_way(two: Two) -> None:
    coder_room, writer = two.coder_room, two.writer
    await writer.join(coder_room)
    forgotten: list[str] = []
    visits = VisitEnder(two.store, two.apis, {CODER: coder_room}, 0.3, forgotten.append)
    assert await visits.sweep() == []
    await asyncio.sleep(0.4)
    # Mentioned again (no turn recorded yet): the use keeps it for another idle_s.
    await visits.use(WRITER, coder_room)
    assert await visits.sweep() == []
    await asyncio.sleep(0.4)

    # A leave under way: a use waits until it is over and the member cache dropped,
    # so the caller finds the agent gone and brings it back in.
    release = asyncio.Event()
    leave = writer.leave

    async def slow_leave(room_id: RoomId) -> None:
        await release.wait()
        await leave(room_id)

    writer.leave = slow_leave  # type: ignore[method-assign]
    sweep = asyncio.create_task(visits.sweep())
    await asyncio.sleep(0.05)
    used = asyncio.create_task(visits.use(WRITER, coder_room))
    await asyncio.sleep(0.05)
    assert not used.done()
    release.set()
    await used
    assert forgotten == [coder_room]
    assert await sweep == [(WRITER, coder_room)]


async def test_the_first_sweep_waits_one_interval(
    two: Two, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a start nobody is asked its rooms (a thousand agents, just when the
    messages that waited are being answered): the first sweep comes one interval on."""
    order: list[str] = []

    async def sleep(seconds: float) -> None:
        order.append(f"sleep {seconds}")
        if len(order) > 2:
            raise asyncio.CancelledError

    ender = VisitEnder(two.store, two.apis, two.rooms, 2.0, lambda _: None)
    monkeypatch.setattr("salon.gateway.visits.asyncio.sleep", sleep)
    original = ender.sweep

    async def sweep() -> list[tuple[AgentId, RoomId]]:
        order.append("sweep")
        return await original()

    monkeypatch.setattr(ender, "sweep", sweep)
    with pytest.raises(asyncio.CancelledError):
        await ender.run(cast(Any, SimpleNamespace(healthy=lambda: None)))
    assert order == ["sleep 0.5", "sweep", "sleep 0.5"]
