"""Who acts for the gateway in a room: the agent in its own room, the router elsewhere."""

from __future__ import annotations

from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import CODER, CODER_USER, ROUTER, WRITER, WRITER_USER

from salon.gateway.voices import RoomVoices, router_leaves
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI


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


async def test_the_router_leaves_only_the_agent_rooms_it_is_in() -> None:
    hs = FakeHomeserver("localhost")
    router, coder, writer = hs.api(ROUTER), hs.api(CODER_USER), hs.api(WRITER_USER)
    old = await router.create_room(alias_localpart="salon-coder", invite=[CODER_USER])
    await coder.join(old)
    new = await writer.create_room(alias_localpart="salon-writer")
    lobby = await router.create_room(alias_localpart="lobby")

    assert await router_leaves(router, [old, new]) == [old]
    assert set(await router.joined_rooms()) == {lobby}
    assert await router_leaves(router, [old, new]) == []
