"""The appservice catch-up on the fake homeserver: each room is read back to its mark
(however many pages), what is missing is admitted oldest first, and the marks move
only once the catch-up has run."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, cast

from tests.fake_matrix import FakeHomeserver, FakeMatrixAPI

from salon._exceptions import MatrixConnectionError
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.as_catchup import CatchUp
from salon.matrix.events import InboundEvent, Invite
from salon.matrix.gaps import GapFiller
from salon.metrics import CATCHUP_ROOMS

ROUTER = UserId("@salon:localhost")
BOB = "@bob:localhost"


class Sink:
    def __init__(self) -> None:
        self.admitted: list[tuple[UserId, list[str]]] = []

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        self.admitted.append((identity, [e.event_id for e in events]))

    async def invited(self, invite: Invite) -> None:
        raise AssertionError("no invitations here")

    def ids(self) -> list[str]:
        return [i for _, batch in self.admitted for i in batch]


class Positions:
    def __init__(self) -> None:
        self.marks: dict[str, dict[str, tuple[str, int]]] = {}

    async def room_marks(self, user_id: str) -> Mapping[str, tuple[str, int]]:
        return dict(self.marks.get(user_id, {}))

    async def advance(
        self,
        user_id: str,
        token: str | None,
        marks: Mapping[str, tuple[str, int]],
        joins: Mapping[str, int],
    ) -> None:
        mine = self.marks.setdefault(user_id, {})
        for room_id, mark in marks.items():
            if room_id not in mine or mark[1] >= mine[room_id][1]:
                mine[room_id] = mark


async def room_with(n: int) -> tuple[FakeMatrixAPI, RoomId, list[dict[str, Any]]]:
    """A room the router is in, with ``n`` messages from Bob (after the joins)."""
    hs = FakeHomeserver()
    ticks = itertools.count(1_000)
    hs.clock = lambda: next(ticks)
    router, bob = hs.api(ROUTER), hs.api(BOB)
    room = await router.create_room(invite=[BOB])
    await bob.join(room)
    for i in range(n):
        await bob.send_event(
            room, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"}, txn_id=f"t{i}"
        )
    return router, room, hs.messages_in(room)


def count(outcome: str) -> float:
    return CATCHUP_ROOMS.labels(outcome=outcome)._value.get()


async def test_walk_stops_at_the_mark_over_many_pages() -> None:
    router, room, messages = await room_with(250)
    positions, sink = Positions(), Sink()
    mark = messages[99]
    positions.marks[ROUTER] = {room: (mark["event_id"], mark["origin_server_ts"])}
    catchup = CatchUp(positions, ROUTER, gaps=GapFiller(page_size=40, cached_pages=2))
    walked = count("walked")

    await catchup.run({room: cast(MatrixAPI, router)}, sink)

    # Exactly what came after the mark, oldest first, nothing at or before it.
    assert sink.ids() == [m["event_id"] for m in messages[100:]]
    assert {identity for identity, _ in sink.admitted} == {ROUTER}
    assert positions.marks[ROUTER][room] == (
        messages[-1]["event_id"],
        messages[-1]["origin_server_ts"],
    )
    assert count("walked") == walked + 1
    assert not catchup.due


async def test_a_current_room_costs_one_request_and_admits_nothing() -> None:
    router, room, messages = await room_with(5)
    positions, sink = Positions(), Sink()
    positions.marks[ROUTER] = {room: (messages[-1]["event_id"], messages[-1]["origin_server_ts"])}
    current = count("current")

    await CatchUp(positions, ROUTER).run({room: cast(MatrixAPI, router)}, sink)

    assert sink.admitted == []
    assert [c["limit"] for c in router.calls_to("messages")] == [1]
    assert count("current") == current + 1


async def test_a_room_without_a_mark_is_marked_not_replayed() -> None:
    router, room, messages = await room_with(3)
    positions, sink = Positions(), Sink()

    await CatchUp(positions, ROUTER).run({room: cast(MatrixAPI, router)}, sink)

    assert sink.admitted == []
    assert positions.marks[ROUTER][room] == (
        messages[-1]["event_id"],
        messages[-1]["origin_server_ts"],
    )


async def test_pushed_marks_wait_for_the_catch_up() -> None:
    """A transaction after an outage must not carry the mark past the events lost
    before it: its mark is written only once the catch-up has run."""
    router, room, messages = await room_with(6)
    positions, sink = Positions(), Sink()
    old = (messages[1]["event_id"], messages[1]["origin_server_ts"])
    positions.marks[ROUTER] = {room: old}
    catchup = CatchUp(positions, ROUTER)
    catchup.hold()
    await catchup.pushed([messages[-1]])  # 2..4 were lost, 5 was pushed
    assert positions.marks[ROUTER][room] == old

    await catchup.run({room: cast(MatrixAPI, router)}, sink)

    assert sink.ids() == [m["event_id"] for m in messages[2:]]
    assert positions.marks[ROUTER][room][0] == messages[-1]["event_id"]
    await catchup.pushed([{**messages[-1], "event_id": "$later", "origin_server_ts": 10**6}])
    assert positions.marks[ROUTER][room][0] == "$later"  # not held any more


async def test_a_room_that_cannot_be_read_keeps_its_mark() -> None:
    router, room, messages = await room_with(4)
    positions, sink = Positions(), Sink()
    old = (messages[0]["event_id"], messages[0]["origin_server_ts"])
    positions.marks[ROUTER] = {room: old}
    catchup = CatchUp(positions, ROUTER)
    await catchup.pushed([messages[-1]])
    router.fail("messages", MatrixConnectionError("down"))

    await catchup.run({room: cast(MatrixAPI, router)}, sink)

    assert sink.admitted == []
    assert positions.marks[ROUTER][room] == old  # the next catch-up walks from here again


async def test_each_room_is_read_once_the_door_lets_it() -> None:
    """The gateway paces the reads behind its replies: none before its turn."""
    router, room, messages = await room_with(5)
    positions, sink = Positions(), Sink()
    positions.marks[ROUTER] = {room: (messages[2]["event_id"], messages[2]["origin_server_ts"])}
    read_before_turn: list[int] = []

    async def door() -> None:
        read_before_turn.append(len(router.calls_to("messages")))

    catchup = CatchUp(positions, ROUTER)
    catchup.door = door
    await catchup.run({room: cast(MatrixAPI, router)}, sink)

    assert read_before_turn == [0]
    assert sink.ids() == [m["event_id"] for m in messages[3:]], "still admitted"


async def test_a_room_without_a_mark_takes_a_pushed_one_while_the_catch_up_waits() -> None:
    """The catch-up at start waits behind the replies; a gateway stopped before it ran
    must still leave the rooms first pushed then marked, so the next start's catch-up
    finds what was lost after (a room with no mark is only marked, nothing replayed)."""
    router, room, messages = await room_with(6)
    positions, sink = Positions(), Sink()
    catchup = CatchUp(positions, ROUTER)  # due, as at start: not run yet
    await catchup.pushed([messages[2]])  # 3..5 are lost after it
    assert positions.marks[ROUTER][room][0] == messages[2]["event_id"]
    await catchup.pushed([messages[3]])  # a room with a mark keeps it while held
    assert positions.marks[ROUTER][room][0] == messages[2]["event_id"]

    await CatchUp(positions, ROUTER).run({room: cast(MatrixAPI, router)}, sink)  # restarted

    assert sink.ids() == [m["event_id"] for m in messages[3:]]


async def test_a_first_mark_pushed_while_a_room_waits_its_turn_is_walked_from() -> None:
    """The run read the marks before its rooms' turns came: a first mark pushed
    meanwhile is where that room's walk stops (not marked past what came after it)."""
    router, room, messages = await room_with(6)
    positions, sink = Positions(), Sink()
    catchup = CatchUp(positions, ROUTER)
    opened = asyncio.Event()

    async def door() -> None:
        await opened.wait()

    catchup.door = door
    running = asyncio.create_task(catchup.run({room: cast(MatrixAPI, router)}, sink))
    await asyncio.sleep(0.05)  # the run has read the (no) marks; the room waits
    await catchup.pushed([messages[2]])  # 3..5 are lost after it
    opened.set()
    await asyncio.wait_for(running, 5)

    assert sink.ids() == [m["event_id"] for m in messages[3:]]
