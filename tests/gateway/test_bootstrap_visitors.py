"""At start, agents leave the other agents' rooms they visited, unless work resumed
now will post there; the owner invites them again."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import CODER, CODER_USER, WRITER, WRITER_USER, open_store

from salon.gateway.bootstrap import _visitors_leave
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI


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

    await _visitors_leave(apis, rooms, store)

    # The writer stays where its resumed turn will answer.
    assert hs.room(coder_room).members[WRITER_USER] == "join"
    # The coder had nothing there: it left and was invited again, to come back on demand.
    assert hs.room(writer_room).members[CODER_USER] == "invite"
    assert hs.room(writer_room).members[WRITER_USER] == "join"
    await store.close()
