"""The OpenAI-compatible endpoint of a real gateway on the session Synapse, on a free
port, called with the official ``openai`` client (nothing of Salon's on the caller side)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from salon.app.gateway import Gateway
from salon.store.delegations import DelegationDirection

from .conftest import salon_config

PLUGINS = "tests.integration.plugins"

Start = Callable[..., Awaitable[Gateway]]
Served = tuple[Gateway, openai.AsyncOpenAI]


def _agents() -> dict[str, Any]:
    return {
        "echo": {"label": "Echo", "backend": {"type": "echo", "fail_on": "FAIL"}},
        "parrot": {"label": "Parrot", "backend": {"type": "echo", "prefix": "🦜 "}},
        "counter": {"backend": {"type": "python", "entry": f"{PLUGINS}:history_size"}},
        "boss": {
            "backend": {
                "type": "python",
                "entry": f"{PLUGINS}:delegating",
                "options": {"to": "parrot"},
            }
        },
        "midway": {"backend": {"type": "python", "entry": f"{PLUGINS}:fails_midway"}},
    }


@pytest.fixture
async def served(
    synapse: Any, tmp_path: Path, gateways: Start, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Served]:
    """A gateway with the API on a free port (``gateway.api.port``), and an OpenAI client."""
    env = f"SALON_TEST_API_TOKEN_{secrets.token_hex(3).upper()}"
    token = secrets.token_urlsafe(16)
    monkeypatch.setenv(env, token)
    config = salon_config(
        synapse,
        tmp_path,
        agents=_agents(),
        teams={"duo": {"agents": ["echo", "parrot"], "mode": "collaborate"}},
        api={"listen": "127.0.0.1:0", "token_env": env},  # port 0: any free one
    )
    gateway = await gateways(config)
    assert gateway.api is not None
    client = openai.AsyncOpenAI(
        base_url=f"{gateway.api.url}/v1", api_key=token, max_retries=0, timeout=30
    )
    async with client:
        yield gateway, client


async def _complete(client: openai.AsyncOpenAI, model: str, text: str, **kw: Any) -> str:
    completion = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )
    assert completion.choices[0].finish_reason == "stop"
    return completion.choices[0].message.content or ""


async def _streamed(client: openai.AsyncOpenAI, model: str, text: str) -> tuple[str, list[Any]]:
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    return "".join(c.choices[0].delta.content or "" for c in chunks), chunks


async def test_an_agent_and_a_team_answer_streamed_and_not(
    served: tuple[Gateway, openai.AsyncOpenAI],
) -> None:
    gateway, client = served

    models = {m.id: m.model_dump() for m in [m async for m in client.models.list()]}
    assert set(models) == {"echo", "parrot", "counter", "boss", "midway", "duo", "auto"}
    assert models["duo"]["kind"] == "team" and models["echo"]["label"] == "Echo"

    assert await _complete(client, "echo", "hello there") == "hello there"
    text, chunks = await _streamed(client, "parrot", "streamed hello")
    assert text == "🦜 streamed hello"
    assert {c.model for c in chunks} == {"parrot"}

    # A team answers through its members (delegation), in one final answer either way.
    for answer in (
        await _complete(client, "duo", "ideas?"),
        (await _streamed(client, "duo", "ideas?"))[0],
    ):
        assert answer.startswith("Summarise your team's answers")
        assert "echo: ideas?" in answer and "parrot: 🦜 ideas?" in answer

    # Each call was one ledgered API turn of the agent (or team) it named.
    assert gateway.store is not None
    rows = await gateway.store.db.fetchall(
        "SELECT agent_id, state FROM turns WHERE kind = 'api' ORDER BY updated_at"
    )
    assert sorted((r["agent_id"], r["state"]) for r in rows) == [
        ("duo", "replied"),
        ("duo", "replied"),
        ("echo", "replied"),
        ("parrot", "replied"),
    ]


async def test_unknown_model_is_404_and_no_token_is_401(
    served: tuple[Gateway, openai.AsyncOpenAI],
) -> None:
    gateway, client = served
    with pytest.raises(openai.NotFoundError) as info:
        await _complete(client, "ghost", "anyone?")
    assert info.value.status_code == 404 and info.value.code == "model_not_found"
    body = info.value.body
    assert isinstance(body, dict) and "ghost" in body["message"]

    assert gateway.api is not None
    wrong = openai.AsyncOpenAI(
        base_url=f"{gateway.api.url}/v1", api_key="not-the-token", max_retries=0
    )
    async with wrong:
        with pytest.raises(openai.AuthenticationError) as denied:
            await _complete(wrong, "echo", "let me in")
    assert denied.value.status_code == 401 and denied.value.code == "unauthorized"
    # No Authorization header at all (the official client always sends one).
    body = {"model": "echo", "messages": [{"role": "user", "content": "let me in"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.api.url}/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    assert gateway.store is not None
    assert await gateway.store.db.fetchall("SELECT 1 FROM turns WHERE kind = 'api'") == []


async def test_auto_picks_by_the_routing_chain_and_says_why(
    served: tuple[Gateway, openai.AsyncOpenAI],
) -> None:
    _, client = served
    raw = await client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "@parrot say hi"}]
    )
    assert raw.headers["X-Salon-Agent"] == "parrot"
    assert raw.headers["X-Salon-Route"].startswith("mention: ")
    assert raw.parse().choices[0].message.content == "🦜 @parrot say hi"


async def test_a_session_header_keeps_the_conversation(
    served: tuple[Gateway, openai.AsyncOpenAI],
) -> None:
    gateway, client = served
    session = {"X-Salon-Session": "notes-1"}
    assert await _complete(client, "counter", "one", extra_headers=session) == "history=0 one"
    assert await _complete(client, "counter", "two", extra_headers=session) == "history=2 two"
    # Stateless by default: the request's own messages are the whole history.
    assert await _complete(client, "counter", "three") == "history=0 three"
    assert gateway.store is not None
    stored = await gateway.store.sessions.messages("agent:counter:api:notes-1", "counter")
    assert [m.content for m in stored] == ["one", "history=0 one", "two", "history=2 two"]


async def test_an_api_turn_can_delegate(served: Served) -> None:
    gateway, client = served
    assert await _complete(client, "boss", "find out") == "boss got: 🦜 task: find out"
    assert gateway.store is not None
    (record,) = [
        r
        for r in await gateway.store.delegations.recent()
        if r.direction == DelegationDirection.OUT
    ]
    # It went over Matrix like any delegation; only the origin room is missing (no room).
    assert (record.from_agent, record.to_agent, record.state.value) == (
        "boss",
        "parrot",
        "completed",
    )
    assert not record.origin_room and (record.origin_event or "").startswith("api:")


async def test_a_failing_backend_gives_openai_errors(
    served: tuple[Gateway, openai.AsyncOpenAI],
) -> None:
    _, client = served
    with pytest.raises(openai.InternalServerError) as info:
        await _complete(client, "echo", "please FAIL")
    assert info.value.status_code == 502 and info.value.code == "backend_error"

    stream = await client.chat.completions.create(
        model="midway", messages=[{"role": "user", "content": "go"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError) as midway:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "partial " and "fell over midway" in midway.value.message
