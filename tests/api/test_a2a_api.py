"""Agents as A2A agents (``/a2a/<agent>``), called with the official ``a2a-sdk`` client:
its card, ``SendMessage`` and its stream in protocol 1.0, ``message/send`` and
``message/stream`` (0.3), each one ledgered API turn on a real turn runner."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.types import AgentCard, Role, SendMessageRequest, TaskState
from tests.api.openai_rig import TOKEN, MakeRig, Rig, rig_maker
from tests.gateway.helpers import CODER, ScriptedBackend

from salon.api import a2a as a2a_routes
from salon.api.server import CONTEXT
from salon.store.records import TurnState


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    async for make in rig_maker(tmp_path):
        yield make


def serve_a2a(rig: Rig, *agents: str) -> None:
    rig.server.app[CONTEXT].a2a_served = lambda agent_id: agent_id in agents


def base_url(rig: Rig, agent: str = "coder") -> str:
    return str(rig.server.make_url(f"/a2a/{agent}"))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


async def ask(
    card: AgentCard, http: httpx.AsyncClient, text: str, *, streaming: bool, context: str = ""
) -> list[Any]:
    """Every event the SDK client yields for one message."""
    client = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card)
    message = new_text_message(text, context_id=context or None, role=Role.ROLE_USER)
    return [event async for event in client.send_message(SendMessageRequest(message=message))]


def streamed_text(events: list[Any]) -> str:
    return "".join(
        part.text
        for e in events
        if e.HasField("artifact_update")
        for part in e.artifact_update.artifact.parts
    )


async def assert_api_turn(rig: Rig, turn_id: str) -> None:
    """The call was one API turn of coder in the ledger, replied."""
    record = await rig.store.turns.get(turn_id, CODER)
    assert record is not None and record.kind == "api" and record.state is TurnState.REPLIED


async def test_card_names_the_agent_and_needs_the_token(
    make_rig: MakeRig, http: httpx.AsyncClient
) -> None:
    rig = await make_rig()
    serve_a2a(rig, "coder")
    card = await A2ACardResolver(http, base_url(rig)).get_agent_card()
    assert card.name == "Coder" and card.description == "Writes code"
    assert [(s.id, s.description) for s in card.skills] == [("coder", "Writes code")]
    assert card.capabilities.streaming
    assert {i.protocol_version for i in card.supported_interfaces} == {"1.0", "0.3"}
    async with httpx.AsyncClient() as anonymous:
        card_url = base_url(rig) + "/.well-known/agent-card.json"
        assert (await anonymous.get(card_url)).status_code == 401
        call = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}}
        assert (await anonymous.post(base_url(rig), json=call)).status_code == 401


async def test_send_message_is_one_ledgered_api_turn(
    make_rig: MakeRig, http: httpx.AsyncClient
) -> None:
    rig = await make_rig(coder=ScriptedBackend(chunks=("Hi ", "there")))
    serve_a2a(rig, "coder")
    card = await A2ACardResolver(http, base_url(rig)).get_agent_card()
    events = await ask(card, http, "hello", streaming=False, context="conv-1")
    assert len(events) == 1 and events[0].HasField("message")
    assert get_message_text(events[0].message) == "Hi there"
    assert events[0].message.context_id == "conv-1"
    await assert_api_turn(rig, events[0].message.metadata["salonTurn"])
    backend = rig.backends[CODER]
    assert backend.calls == 1 and backend.requests[0].text == "hello"
    # The same context is the same durable session: the next turn sees the first.
    await ask(card, http, "and again", streaming=False, context="conv-1")
    assert "hello" in str(backend.requests[1].history)
    await ask(card, http, "elsewhere", streaming=False, context="conv-2")
    assert "hello" not in str(backend.requests[2].history)


async def test_streamed_answer_arrives_in_chunks(
    make_rig: MakeRig, http: httpx.AsyncClient
) -> None:
    rig = await make_rig(coder=ScriptedBackend(chunks=("one ", "two ", "three")))
    serve_a2a(rig, "coder")
    card = await A2ACardResolver(http, base_url(rig)).get_agent_card()
    events = await ask(card, http, "count", streaming=True)
    assert events[0].HasField("task")
    assert sum(e.HasField("artifact_update") for e in events) == 3
    assert streamed_text(events) == "one two three"
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    await assert_api_turn(rig, "api:" + events[0].task.id)
    assert rig.backends[CODER].calls == 1


async def test_protocol_0_3_methods(make_rig: MakeRig, http: httpx.AsyncClient) -> None:
    rig = await make_rig(coder=ScriptedBackend(chunks=("old ", "style")))
    serve_a2a(rig, "coder")
    card = await A2ACardResolver(http, base_url(rig)).get_agent_card()
    # Only the 0.3 interface: the SDK speaks `message/send` and `message/stream`.
    legacy = [i for i in card.supported_interfaces if i.protocol_version == "0.3"]
    del card.supported_interfaces[:]
    card.supported_interfaces.extend(legacy)
    sent = await ask(card, http, "hi", streaming=False)
    assert get_message_text(sent[0].message) == "old style"
    streamed = await ask(card, http, "hi again", streaming=True)
    assert streamed_text(streamed) == "old style"
    assert streamed[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    await assert_api_turn(rig, "api:" + streamed[0].task.id)
    assert rig.backends[CODER].calls == 2


async def test_off_unless_configured_and_bad_calls_get_errors(make_rig: MakeRig) -> None:
    rig = await make_rig()
    serve_a2a(rig, "writer")  # coder is not served
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.get(base_url(rig) + "/.well-known/agent-card.json") as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
        calls: list[tuple[Any, int]] = [
            ({"jsonrpc": "2.0", "id": 7, "method": "tasks/get", "params": {}}, -32601),
            ({"jsonrpc": "2.0", "id": 8, "method": "SendMessage", "params": {}}, -32602),
            ({"id": 9}, -32600),
        ]
        for body, code in calls:
            async with session.post(base_url(rig, "writer"), data=json.dumps(body)) as resp:
                answer = await resp.json()
                assert resp.status == 200 and answer["error"]["code"] == code
    assert rig.backends[CODER].calls == 0


async def test_a_slow_stream_sends_keepalives_the_sdk_ignores(
    make_rig: MakeRig, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(a2a_routes, "KEEPALIVE_S", 0.2)
    monkeypatch.setattr(a2a_routes, "POLL_S", 0.1)
    rig = await make_rig(coder=ScriptedBackend(chunks=("late",), first_delay=1.0))
    serve_a2a(rig, "coder")
    card = await A2ACardResolver(http, base_url(rig)).get_agent_card()
    events = await ask(card, http, "take your time", streaming=True)
    assert streamed_text(events) == "late"
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendStreamingMessage",
        "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]}},
    }
    raw = await http.post(base_url(rig), json=call)
    assert ": keep-alive" in raw.text and raw.text.count("data: ") == 3  # task, chunk, end
