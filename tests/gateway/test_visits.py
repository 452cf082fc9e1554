"""Agents leave the other agents' rooms they visited (at start, and once idle there
while running), unless work of theirs will still post there; the owner invites them
again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import CODER, CODER_USER, WRITER, WRITER_USER, open_store, sample

from salon.gateway.visits import VisitEnder, visitors_leave
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.store.records import TurnState


async def test_visitors_leave_except_where_resumed_work_posts(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver("localhost")
    coder, writer = hs.api(CODER_USER), hs.api(WRITER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder", invite=[WRITER_USER])
    writer_room = await writer.create_room(alias_localpart="salon-writer", invite=[CODER_USER])
    await writer.join(coder_room)
    await coder.join(writer_room)
    # The writer was mentioned in the coder's room and its turn did not finish.
    await store.turns.admit("$asked", WRITER, coder_room)
    apis = {CODER: cast(MatrixAPI, coder), WRITER: cast(MatrixAPI, writer)}
    rooms: dict[AgentId, RoomId] = {CODER: coder_room, WRITER: writer_room}

    await visitors_leave(apis, rooms, store)

    # The writer stays where its resumed turn will answer.
    assert hs.room(coder_room).members[WRITER_USER] == "join"
    # The coder had nothing there: it left and was invited again, to come back on demand.
    assert hs.room(writer_room).members[CODER_USER] == "invite"
    assert hs.room(writer_room).members[WRITER_USER] == "join"
    await store.close()


async def test_a_visitor_idle_in_a_room_leaves_while_running(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver("localhost")
    coder, writer = hs.api(CODER_USER), hs.api(WRITER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder", invite=[WRITER_USER])
    writer_room = await writer.create_room(alias_localpart="salon-writer", invite=[CODER_USER])
    await writer.join(coder_room)  # mentioned there: it answered
    await coder.join(writer_room)  # it delegated there; the result is not yet reported
    await store.turns.admit("$asked", WRITER, coder_room)
    await store.turns.finish("$asked", WRITER, TurnState.REPLIED)
    await store.turns.admit("$report", CODER, writer_room)
    apis = {CODER: cast(MatrixAPI, coder), WRITER: cast(MatrixAPI, writer)}
    rooms: dict[AgentId, RoomId] = {CODER: coder_room, WRITER: writer_room}
    forgotten: list[str] = []
    visits = VisitEnder(store, apis, rooms, idle_s=0.3, on_left=forgotten.append)
    before = sample("salon_visits_ended_total", reason="idle")

    # Just seen there, just active there: both stay.
    assert await visits.sweep() == []
    await asyncio.sleep(0.4)

    # Idle past the limit: the writer leaves and is invited again; the coder's
    # unfinished turn keeps it in the writer's room.
    assert await visits.sweep() == [(WRITER, coder_room)]
    assert hs.room(coder_room).members[WRITER_USER] == "invite"
    assert hs.room(writer_room).members[CODER_USER] == "join"
    assert sample("salon_visits_ended_total", reason="idle") == before + 1
    assert forgotten == [coder_room]  # routing's member cache of the room is dropped

    # Its turn done, the coder leaves once idle too.
    await store.turns.finish("$report", CODER, TurnState.REPLIED)
    assert await visits.sweep() == []  # its turn ended just now
    await asyncio.sleep(0.4)
    assert await visits.sweep() == [(CODER, writer_room)]
    assert hs.room(writer_room).members[CODER_USER] == "invite"
    await store.close()


async def test_a_visitor_that_just_joined_gets_its_grace(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver("localhost")
    coder, writer = hs.api(CODER_USER), hs.api(WRITER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder", invite=[WRITER_USER])
    apis = {CODER: cast(MatrixAPI, coder), WRITER: cast(MatrixAPI, writer)}
    visits = VisitEnder(store, apis, {CODER: coder_room}, idle_s=0.3)
    assert await visits.sweep() == []
    await asyncio.sleep(0.4)
    # It joins (mentioned) after a sweep; its turn is not recorded yet: it stays.
    await writer.join(coder_room)
    assert await visits.sweep() == []
    assert hs.room(coder_room).members[WRITER_USER] == "join"
    await asyncio.sleep(0.4)
    assert await visits.sweep() == [(WRITER, coder_room)]
    await store.close()


async def test_a_use_keeps_the_visit_and_waits_for_a_leave_under_way(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver("localhost")
    coder, writer = hs.api(CODER_USER), hs.api(WRITER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder", invite=[WRITER_USER])
    await writer.join(coder_room)
    apis = {CODER: cast(MatrixAPI, coder), WRITER: cast(MatrixAPI, writer)}
    forgotten: list[str] = []
    visits = VisitEnder(store, apis, {CODER: coder_room}, 0.3, on_left=forgotten.append)
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
    await store.close()
