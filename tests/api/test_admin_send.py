"""The admin API on a fake gateway: send, and wait for the reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.api.rig import AUTH, ApiRig, api_client, rig_and_client
from tests.api.test_admin_routes import Client, _error
from tests.gateway.helpers import ALICE, CODER, WRITER

from salon.store.records import InboxItem, InboxState, TurnState


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def test_send_and_wait_returns_the_newest_version_of_the_reply(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    gateway = asyncio.create_task(rig.answer(CODER, chunks=("Hel", "Hello", "Hello, Alice")))
    response = await client.post(
        "/api/v1/messages",
        json={"to": "coder", "text": "hi coder", "wait": True, "timeout_s": 5},
        headers=AUTH,
    )
    event_id = await gateway
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["event_id"] == event_id
    assert body["room_id"] == rig.rooms[CODER]
    assert body["reply"]["text"] == "Hello, Alice"
    assert body["reply"]["agent"] == "coder" and body["reply"]["state"] == "replied"
    assert body["reply"]["notice"] is False
    assert body["replies"] == [body["reply"]]
    # The operator was not in the room: the agent (whose room it is) invited it and it
    # joined, then posted.
    sent = [e for e in rig.events(rig.rooms[CODER]) if e["event_id"] == event_id]
    assert sent[0]["sender"] == ALICE and sent[0]["content"]["body"] == "hi coder"
    assert rig.agents[CODER].calls_to("invite")[-1]["user_id"] == ALICE
    assert not rig.router.calls_to("invite")


async def test_a_failed_turn_gives_its_notice(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    gateway = asyncio.create_task(
        rig.answer(CODER, chunks=("⚠️ Coder could not answer",), notice=True, state=TurnState.FAILED)
    )
    response = await client.post(
        "/api/v1/messages", json={"to": "coder", "text": "x", "wait": True}, headers=AUTH
    )
    await gateway
    reply = (await response.json())["reply"]
    assert reply["state"] == "failed" and reply["notice"] is True
    assert reply["text"] == "⚠️ Coder could not answer"


async def test_a_message_in_the_lobby_waits_for_whoever_was_routed(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    gateway = asyncio.create_task(rig.answer(WRITER, chunks=("prose",)))
    response = await client.post(
        "/api/v1/messages", json={"to": "lobby", "text": "write", "wait": True}, headers=AUTH
    )
    await gateway
    body = await response.json()
    assert body["room_id"] == rig.lobby
    assert body["reply"]["agent"] == "writer" and body["reply"]["text"] == "prose"


async def test_a_command_is_answered_as_not_routed(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc

    async def gateway() -> None:
        # The gateway took the message as a command: inbox done, no routing decision.
        while True:
            mine = [e for e in rig.events(rig.lobby) if e["sender"] == ALICE]
            if mine:
                break
            await asyncio.sleep(0.01)
        item = InboxItem(mine[0]["event_id"], rig.lobby, ALICE, "m.room.message", "{}", 0, ALICE)
        await rig.store.inbox.admit([item])
        await rig.store.inbox.mark(item.event_id, InboxState.DONE, "command")

    task = asyncio.create_task(gateway())
    response = await client.post(
        "/api/v1/messages", json={"to": "lobby", "text": "!help", "wait": True}, headers=AUTH
    )
    await task
    body = await response.json()
    assert response.status == 200
    assert body["routed"] == "not routed" and body["reply"] is None and body["replies"] == []


async def test_send_without_wait_is_accepted_at_once(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    response = await client.post(
        "/api/v1/messages", json={"to": "writer", "text": "note this"}, headers=AUTH
    )
    assert response.status == 202
    body = await response.json()
    assert [
        e["content"]["body"] for e in rig.events(rig.rooms[WRITER]) if e["sender"] == ALICE
    ] == ["note this"]
    assert body["event_id"] and "reply" not in body


async def test_no_answer_in_time_is_504(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    response = await client.post(
        "/api/v1/messages",
        json={"to": "coder", "text": "anyone?", "wait": True, "timeout_s": 0.3},
        headers=AUTH,
    )
    assert "0.3 s" in await _error(response, 504, "timeout")


async def test_send_without_an_operator_is_409(tmp_path: Path) -> None:
    rig = await ApiRig.start(tmp_path, operator=False)
    client = await api_client(rig.ctx)
    try:
        response = await client.post(
            "/api/v1/messages", json={"to": "coder", "text": "hi"}, headers=AUTH
        )
        await _error(response, 409, "no_operator")
    finally:
        await client.close()
        await rig.store.close()


async def test_an_operator_that_cannot_get_in_is_403(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.hs.room(rig.rooms[CODER]).members.pop(str(rig.agents[CODER].user_id))  # agent left
    response = await client.post(
        "/api/v1/messages", json={"to": "coder", "text": "hi"}, headers=AUTH
    )
    await _error(response, 403, "operator_not_in_room")


async def test_homeserver_down_while_sending_is_503(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.hs.down = True
    response = await client.post(
        "/api/v1/messages", json={"to": "coder", "text": "hi"}, headers=AUTH
    )
    await _error(response, 503, "homeserver_unavailable")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "hi"}, "to"),
        ({"to": "coder"}, "text"),
        ({"to": "coder", "text": "  "}, "text"),
        ({"to": "coder", "text": 5}, "text"),
        ({"to": "coder", "text": "hi", "wait": "yes"}, "wait"),
        ({"to": "coder", "text": "hi", "timeout_s": 0}, "timeout_s"),
        ({"to": "coder", "text": "hi", "timeout_s": "5"}, "timeout_s"),
        ({"to": "coder", "text": "hi", "timeout_s": True}, "timeout_s"),
        ({"to": "coder", "text": "hi", "timeout_s": 99999}, "timeout_s"),
        ({"to": "coder", "text": "hi", "tx": 1}, "tx"),
    ],
)
async def test_invalid_message_bodies_name_the_field(
    rc: tuple[ApiRig, Client], body: dict[str, Any], field: str
) -> None:
    _, client = rc
    response = await client.post("/api/v1/messages", json=body, headers=AUTH)
    assert (await _error(response, 400, "invalid_request")).startswith(f"{field}:")


async def test_a_body_that_is_not_a_json_object_is_400(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    headers = {**AUTH, "Content-Type": "application/json"}
    for data, code in (
        (b"not json", "bad_json"),
        (b"[1, 2]", "invalid_request"),
        (b"", "invalid_request"),
    ):
        response = await client.post("/api/v1/messages", data=data, headers=headers)
        await _error(response, 400, code)


async def test_sending_to_an_unknown_agent_is_404(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    response = await client.post("/api/v1/messages", json={"to": "zed", "text": "hi"}, headers=AUTH)
    await _error(response, 404, "agent_not_found")
