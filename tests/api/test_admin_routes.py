"""The admin API on a fake gateway: agents, send (and wait), read, delegate, status, auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.rig import AUTH, ApiRig, api_client, rig_and_client
from tests.gateway.helpers import ALICE, CODER, CODER_USER, WRITER

from salon.agents.tools import DelegationOutcome
from salon.api.context import LoopState
from salon.ids import RoomId
from salon.store.delegations import DelegationDirection, DelegationPhase, DelegationRecord
from salon.store.records import InboxItem, InboxState, TurnState

Client = TestClient[Any, Any]


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def _error(response: Any, status: int, code: str) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


# --- auth -------------------------------------------------------------------------------


async def test_every_admin_route_needs_the_token(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    for method, path in [
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/status"),
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            response = await client.request(method, path, headers=headers)
            await _error(response, 401, "unauthorized")
    assert (await client.get("/healthz")).status == 200


# --- agents -------------------------------------------------------------------------------


async def test_agents_show_status_from_heartbeats(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    await rig.beat(CODER, "busy")
    await rig.beat(WRITER, "online", age_s=3600)  # older than its TTL: offline

    response = await client.get("/api/v1/agents", headers=AUTH)
    assert response.status == 200
    agents = {a["id"]: a for a in (await response.json())["agents"]}
    assert set(agents) == {"coder", "writer"}
    coder = agents["coder"]
    assert coder["status"] == "busy"
    assert coder["user_id"] == CODER_USER
    assert coder["room_id"] == rig.rooms[CODER]
    assert coder["room_alias"] == "#salon-coder:localhost"
    assert coder["label"] == "Coder" and coder["description"] == "Writes code"
    assert coder["gateway"] == "test-gw" and coder["last_beat_ms"] > 0
    assert agents["writer"]["status"] == "offline"

    one = await client.get("/api/v1/agents/coder", headers=AUTH)
    assert (await one.json()) == coder


async def test_an_agent_that_never_beat_is_offline_and_an_unreadable_one_unknown(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    assert (await (await client.get("/api/v1/agents/coder", headers=AUTH)).json())[
        "status"
    ] == "offline"
    rig.hs.down = True
    view = await (await client.get("/api/v1/agents/coder", headers=AUTH)).json()
    assert view["status"] == "unknown" and "unreachable" in view["status_error"]


async def test_unknown_agent_is_404_naming_the_known(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    message = await _error(
        await client.get("/api/v1/agents/nobody", headers=AUTH), 404, "agent_not_found"
    )
    assert "nobody" in message and "coder" in message and "writer" in message


# --- sending ------------------------------------------------------------------------------


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
    # The operator was not in the room: the router invited it and it joined, then posted.
    sent = [e for e in rig.events(rig.rooms[CODER]) if e["event_id"] == event_id]
    assert sent[0]["sender"] == ALICE and sent[0]["content"]["body"] == "hi coder"
    assert rig.router.calls_to("invite")[-1]["user_id"] == ALICE


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
    rig.hs.room(rig.rooms[CODER]).members.pop(str(rig.router.user_id))  # router left
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
    for data in (b"not json", b"[1, 2]", b""):
        response = await client.post("/api/v1/messages", data=data, headers=AUTH)
        await _error(response, 400, "invalid_request")


async def test_sending_to_an_unknown_agent_is_404(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    response = await client.post("/api/v1/messages", json={"to": "zed", "text": "hi"}, headers=AUTH)
    await _error(response, 404, "agent_not_found")


# --- reading ------------------------------------------------------------------------------


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
    await rig.router.send_event(
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


# --- delegations --------------------------------------------------------------------------


def _record(id: str, direction: str, state: DelegationPhase, **extra: Any) -> DelegationRecord:
    return DelegationRecord(
        id=id,
        direction=DelegationDirection(direction),
        from_agent=extra.pop("from_agent", "coder"),
        to_agent=extra.pop("to_agent", "writer"),
        task=extra.pop("task", "write it"),
        root=id,
        chain=("coder",),
        hop=1,
        target_room="!writer:localhost",
        deadline_ts=0,
        state=state,
        **extra,
    )


async def test_delegate_and_wait_returns_the_outcome_with_its_id(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    rig.delegations.outcome = DelegationOutcome(True, "the poem")
    real_delegate = rig.delegations.delegate

    async def delegate(from_agent: str, to_agent: str, task: str, **kwargs: Any) -> Any:
        await rig.store.delegations.create(
            _record("d-1", "out", DelegationPhase.COMPLETED, task=task)
        )
        return await real_delegate(from_agent, to_agent, task, **kwargs)

    rig.delegations.delegate = delegate  # type: ignore[method-assign]
    response = await client.post(
        "/api/v1/delegations",
        json={"from": "coder", "to": "writer", "task": "write it", "context": "short"},
        headers=AUTH,
    )
    assert response.status == 200, await response.text()
    assert await response.json() == {"ok": True, "text": "the poem", "id": "d-1"}
    [call] = rig.delegations.calls
    assert call == {
        "from": "coder",
        "to": "writer",
        "task": "write it",
        "context": "short",
        "origin_room": rig.rooms[CODER],
        "origin_event": None,
        "wait": True,
    }


async def test_delegate_without_wait_returns_the_id(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.delegations.outcome = DelegationOutcome(True, "d-7")
    response = await client.post(
        "/api/v1/delegations",
        json={"from": "coder", "to": "writer", "task": "t", "wait": False},
        headers=AUTH,
    )
    assert await response.json() == {"ok": True, "text": "d-7", "id": "d-7"}
    assert rig.delegations.calls[0]["wait"] is False


async def test_a_refused_delegation_is_an_outcome(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.delegations.outcome = DelegationOutcome(False, "[NOT ALLOWED] coder may not delegate")
    response = await client.post(
        "/api/v1/delegations", json={"from": "coder", "to": "writer", "task": "t"}, headers=AUTH
    )
    assert response.status == 200
    assert await response.json() == {
        "ok": False,
        "text": "[NOT ALLOWED] coder may not delegate",
        "id": None,
    }


async def test_a_slow_delegation_is_504_and_goes_on(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.delegations.delay = 0.5
    response = await client.post(
        "/api/v1/delegations",
        json={"from": "coder", "to": "writer", "task": "t", "timeout_s": 0.1},
        headers=AUTH,
    )
    await _error(response, 504, "timeout")
    await asyncio.sleep(0.6)
    assert rig.delegations.finished == 1  # not cancelled with the request


async def test_delegation_bodies_are_checked(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    for body, status, code in [
        ({"to": "writer", "task": "t"}, 400, "invalid_request"),
        ({"from": "coder", "to": "writer"}, 400, "invalid_request"),
        ({"from": "coder", "to": "writer", "task": "t", "context": 1}, 400, "invalid_request"),
        ({"from": "zed", "to": "writer", "task": "t"}, 404, "agent_not_found"),
        ({"from": "coder", "to": "zed", "task": "t"}, 404, "agent_not_found"),
    ]:
        await _error(
            await client.post("/api/v1/delegations", json=body, headers=AUTH), status, code
        )
    assert rig.delegations.calls == []


# --- status -------------------------------------------------------------------------------


async def test_status_shows_one_line_per_delegation_turns_loops_and_reachability(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    store = rig.store
    # Both agents here: one row each way under one id; the line shows the furthest side.
    await store.delegations.create(_record("d-1", "out", DelegationPhase.SENT))
    await store.delegations.create(_record("d-1", "in", DelegationPhase.PROGRESS))
    await store.delegations.create(_record("d-2", "out", DelegationPhase.COMPLETED))
    await store.turns.admit("$t1", CODER, "!r:localhost")
    await store.turns.start("$t1", CODER)
    rig.runner.running = [("$t1", CODER)]
    rig.loops.append(LoopState("heartbeat:coder", False, 3, True, "MatrixConnectionError: down"))

    body = await (await client.get("/api/v1/status", headers=AUTH)).json()
    assert body["gateway"] == "test-gw"
    assert [(d["id"], d["from"], d["to"], d["state"]) for d in body["delegations"]] == [
        ("d-1", "coder", "writer", "progress")
    ]
    assert body["turns_in_flight"] == [
        {"event_id": "$t1", "agent": "coder", "state": "running", "attempts": 1}
    ]
    assert body["loops_restarting"] == ["heartbeat:coder"]
    assert body["loops_ok"] is False
    assert body["store"] == {"ok": True}
    assert body["homeserver"] == {"ok": True}

    rig.homeserver_up = False
    body = await (await client.get("/api/v1/status", headers=AUTH)).json()
    assert body["homeserver"]["ok"] is False
