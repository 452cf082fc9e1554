"""Who acts for the gateway in a room: the agent in its own room, the router elsewhere."""

from __future__ import annotations

from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import (
    CODER,
    CODER_USER,
    ROUTER,
    WRITER,
    WRITER_USER,
    make_config,
    make_roster,
)

from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import Invite
from salon.turns.voices import RoomVoices, is_visit, leave_joined


async def test_an_agent_room_is_the_agents_and_every_other_room_the_routers() -> None:
    hs = FakeHomeserver("localhost")
    router, coder = hs.api(ROUTER), hs.api(CODER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder")
    lobby = await router.create_room(alias_localpart="lobby")
    apis: dict[AgentId, MatrixAPI] = {CODER: coder}  # type: ignore[dict-item]
    rooms: dict[AgentId, RoomId] = {CODER: coder_room}
    voices = RoomVoices(router, apis, rooms)  # type: ignore[arg-type]

    assert voices.owner(coder_room) == CODER and voices.of(coder_room) is coder
    assert voices.owner(lobby) is None and voices.of(lobby) is router
    # Live maps: an agent a reload adds is answered for at once.
    writer = hs.api(WRITER_USER)
    writer_room = await writer.create_room(alias_localpart="salon-writer")
    apis[WRITER] = writer  # type: ignore[assignment]
    rooms[WRITER] = writer_room
    assert voices.of(writer_room) is writer
    # A room whose agent is gone (removed by a reload) falls back to the router.
    del apis[WRITER]
    assert voices.of(writer_room) is router


async def test_the_leave_joined_only_the_agent_rooms_it_is_in() -> None:
    hs = FakeHomeserver("localhost")
    router, coder, writer = hs.api(ROUTER), hs.api(CODER_USER), hs.api(WRITER_USER)
    old = await router.create_room(alias_localpart="salon-coder", invite=[CODER_USER])
    await coder.join(old)
    new = await writer.create_room(alias_localpart="salon-writer")
    lobby = await router.create_room(alias_localpart="lobby")

    assert await leave_joined(router, [old, new]) == [old]
    assert set(await router.joined_rooms()) == {lobby}
    assert await leave_joined(router, [old, new]) == []


def test_an_invitation_into_another_agents_own_room_is_a_visit() -> None:
    hs = FakeHomeserver("localhost")
    roster = make_roster(make_config(peers={"scout": "@salon_scout:example.org"}))
    coder_room, lobby, elsewhere = RoomId("!coder:x"), RoomId("!lobby:x"), RoomId("!other:x")
    voices = RoomVoices(hs.api(ROUTER), {}, {CODER: coder_room})  # type: ignore[arg-type]

    def visit(room: RoomId, sender: str, invited: str) -> bool:
        return is_visit(roster, voices, Invite(room, UserId(sender), UserId(invited)))

    assert visit(coder_room, CODER_USER, WRITER_USER)  # the owner asks a colleague in
    assert visit(coder_room, ROUTER, WRITER_USER)  # into a room an older version made
    # An agent added by a reload is not in the roster yet when its room's invitations
    # go out: the room alone tells (it is registered before anyone is invited).
    assert visit(coder_room, "@salon_newcomer:localhost", WRITER_USER)
    assert visit(elsewhere, "@salon_scout:example.org", WRITER_USER)  # a peer, its room
    assert not visit(lobby, ROUTER, WRITER_USER)  # the router's rooms: joined at once
    assert not visit(elsewhere, CODER_USER, WRITER_USER)  # not the inviter's own room
    assert not visit(coder_room, CODER_USER, CODER_USER)  # the owner itself
    assert not visit(coder_room, CODER_USER, ROUTER)  # not an agent invited
