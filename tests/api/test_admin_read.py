"""The admin API on a fake gateway: read a room's recent messages, edits applied."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.api.rig import AUTH, ApiRig, rig_and_client
from tests.api.test_admin_routes import Client, _error
from tests.gateway.helpers import CODER, CODER_USER, WRITER

from salon.ids import RoomId


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def _chatter(rig: ApiRig) -> RoomId:
    """A room where edits, a reaction and state events follow three messages."""
    room = rig.rooms[CODER]
    api = rig.agents[CODER]
    first = await api.send_event(
        room, "m.room.message", {"body": "one", "msgtype": "m.text"}, txn_id="1"
    )
    await api.send_event(room, "m.room.message", {"body": "two", "msgtype": "m.notice"}, txn_id="2")
    third = await api.send_event(
        room, "m.room.message", {"body": "thr", "msgtype": "m.text"}, txn_id="3"
    )
    for i, body in enumerate(["thre", "three"]):
        await api.send_event(
            room,
            "m.room.message",
            {
                "body": f"* {body}",
                "m.new_content": {"body": body, "msgtype": "m.text"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": third},
            },
            txn_id=f"e{i}",
        )
    # Someone else's "edit" of the first message is not applied.
    other = rig.agents[WRITER]
    await api.invite(room, other.user_id)
    await other.join(room)
    await other.send_event(
        room,
        "m.room.message",
        {
            "body": "* hacked",
            "m.new_content": {"body": "hacked"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": first},
        },
        txn_id="h",
    )
    for i in range(30):
        await api.send_event(
            room,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": third, "key": str(i)}},
            txn_id=f"r{i}",
        )
        await api.send_state(room, "m.room.topic", {"topic": f"t{i}"})
    return room


async def test_read_gives_the_newest_messages_edited_and_nothing_else(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    room = await _chatter(rig)

    response = await client.get("/api/v1/rooms/coder/messages?limit=2", headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["room_id"] == room
    assert [(m["body"], m["notice"], m["edited"]) for m in body["messages"]] == [
        ("two", True, False),
        ("three", False, True),
    ]
    assert body["messages"][0]["agent"] == "coder"
    assert body["messages"][0]["sender"] == CODER_USER

    everything = await (await client.get(f"/api/v1/rooms/{room}/messages", headers=AUTH)).json()
    assert [m["body"] for m in everything["messages"]] == ["one", "two", "three"]
    by_alias = await client.get("/api/v1/rooms/%23salon-coder:localhost/messages", headers=AUTH)
    assert (await by_alias.json())["messages"] == everything["messages"]


async def test_read_errors(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    await _error(
        await client.get("/api/v1/rooms/nowhere/messages", headers=AUTH), 404, "room_not_found"
    )
    await _error(
        await client.get("/api/v1/rooms/%23nope:localhost/messages", headers=AUTH),
        404,
        "room_not_found",
    )
    stranger = await rig.operator.create_room()  # the router is not in it
    await _error(
        await client.get(f"/api/v1/rooms/{stranger}/messages", headers=AUTH), 403, "room_forbidden"
    )
    for limit in ("0", "201", "x"):
        response = await client.get(f"/api/v1/rooms/lobby/messages?limit={limit}", headers=AUTH)
        assert (await _error(response, 400, "invalid_request")).startswith("limit:")
    assert (await client.get("/api/v1/rooms/lobby/messages", headers=AUTH)).status == 200
