"""The OpenAI-compatible routes on a real turn runner (real SQLite store, scripted
backends, a fake homeserver the API turns never touch), called with the official
``openai`` client and, where the wire format matters, with raw HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import (
    CODER,
    CODER_USER,
    SERVER,
    WRITER,
    WRITER_USER,
    ScriptedBackend,
    eventually,
    make_config,
    make_roster,
    open_store,
)

from salon.agents.profile import AgentProfile
from salon.agents.runtime import AgentRuntime
from salon.api import openai as openai_routes
from salon.api.context import ApiContext
from salon.api.server import CONTEXT, auth_middleware, errors_middleware
from salon.gateway.turns import TurnPolicy, TurnRunner
from salon.ids import AgentId
from salon.routing.router import Router
from salon.store import Store
from salon.store.records import TurnState

TOKEN = "unit-test-token"


@dataclass
class Rig:
    """The OpenAI routes of one app over a runner for ``coder`` and ``writer``."""

    server: TestServer
    store: Store
    runner: TurnRunner
    backends: dict[AgentId, ScriptedBackend]
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/v1"))

    def client(self, **options: Any) -> openai.AsyncOpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("api_key", TOKEN)
        client = openai.AsyncOpenAI(base_url=self.base_url, **options)
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.close()

    async def post(
        self, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        """A raw POST to /v1/chat/completions: status, headers, body text."""
        auth = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        data = body if isinstance(body, str) else json.dumps(body)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.base_url}/chat/completions", data=data, headers=auth) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.text()

    def watched(self) -> int:
        return len(self.runner.watchers._by_key)


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(
        coder: ScriptedBackend | None = None,
        writer: ScriptedBackend | None = None,
        policy: TurnPolicy | None = None,
    ) -> Rig:
        store = await open_store(tmp_path)
        cleanups.append(store.close)
        config = make_config()
        roster = make_roster(config)
        backends = {
            CODER: coder or ScriptedBackend(chunks=("Hi ", "there")),
            WRITER: writer or ScriptedBackend(chunks=("prose",)),
        }
        runtimes = {
            a: AgentRuntime(
                AgentProfile(a, roster.member(a).label, "", home=tmp_path / a),
                backend,
                store.sessions,
            )
            for a, backend in backends.items()
        }
        hs = FakeHomeserver(SERVER)
        apis = {CODER: hs.api(CODER_USER), WRITER: hs.api(WRITER_USER)}
        runner = TurnRunner(store, runtimes, apis, policy=policy)
        ctx = ApiContext(
            gateway="unit",
            roster=roster,
            store=store,
            runner=runner,
            router=Router.from_config(config, roster),
            delegations=cast(Any, None),
            router_api=cast(Any, None),
            agent_apis={},
            agent_rooms={},
            lobby_id="",
            loops=list,
        )
        app = web.Application(middlewares=[errors_middleware, auth_middleware(TOKEN)])
        app[CONTEXT] = ctx
        openai_routes.add_routes(app)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        cleanups.append(server.close)
        cleanups.append(runner.stop)
        rig = Rig(server, store, runner, backends)
        cleanups.append(rig.close_clients)
        return rig

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()


def _events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


# --- /v1/models -------------------------------------------------------------------------


async def test_models_lists_every_agent_and_auto(make_rig: MakeRig) -> None:
    rig = await make_rig()
    models = [m async for m in rig.client().models.list()]
    assert [m.id for m in models] == ["coder", "writer", "auto"]
    assert {m.owned_by for m in models} == {"salon"}
    coder = models[0].model_dump()
    assert coder["label"] == "Coder" and coder["description"] == "Writes code"
    assert (await rig.client().models.retrieve("writer")).id == "writer"
    with pytest.raises(openai.NotFoundError):
        await rig.client().models.retrieve("nobody")


# --- answers ---------------------------------------------------------------------------------


async def test_non_streamed_answer_is_a_ledgered_stateless_turn(make_rig: MakeRig) -> None:
    rig = await make_rig()
    raw = await rig.client().chat.completions.with_raw_response.create(
        model="coder",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        ],
    )
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.model == "coder"
    choice = completion.choices[0]
    assert choice.message.content == "Hi there" and choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["X-Salon-Agent"] == "coder"
    # The backend saw the request's history (the system message too), not a session.
    (request,) = rig.backends[CODER].requests
    assert request.text == "hello"
    assert [(m.role, m.content) for m in request.history] == [
        ("system", "be brief"),
        ("user", "first"),
        ("assistant", "an answer"),
    ]
    turn_id = raw.headers["X-Salon-Turn"]
    record = await rig.store.turns.get(turn_id, CODER)
    assert record is not None and record.state is TurnState.REPLIED and record.kind == "api"
    assert await rig.store.sessions.messages("agent:coder:api:stateless", CODER) == []
    assert rig.watched() == 0


async def test_streamed_answer_sends_role_then_chunks_then_stop_and_done(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(coder=ScriptedBackend(chunks=("one ", "two ", "three"), delay=0.05))
    stream = await rig.client().chat.completions.create(
        model="coder", messages=[{"role": "user", "content": "count"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert contents == ["one ", "two ", "three"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1

    body = {
        "model": "coder",
        "messages": [{"role": "user", "content": "count"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    status, headers, text = await rig.post(body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = _events(text)
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0


async def test_session_header_or_user_field_make_a_durable_session(make_rig: MakeRig) -> None:
    rig = await make_rig()
    client = rig.client()
    for text in ("first", "second"):
        await client.chat.completions.create(
            model="coder",
            messages=[{"role": "user", "content": text}],
            extra_headers={"X-Salon-Session": "s1"},
        )
    first, second = rig.backends[CODER].requests
    assert first.history == () and first.session_key == "agent:coder:api:s1"
    assert [(m.role, m.content) for m in second.history] == [
        ("user", "first"),
        ("assistant", "Hi there"),
    ]
    stored = await rig.store.sessions.messages("agent:coder:api:s1", CODER)
    assert [m.content for m in stored] == ["first", "Hi there", "second", "Hi there"]

    await client.chat.completions.create(
        model="writer", messages=[{"role": "user", "content": "x"}], user="alice"
    )
    (request,) = rig.backends[WRITER].requests
    assert request.session_key == "agent:writer:api:alice" and request.sender == "api:alice"
    assert len(await rig.store.sessions.messages("agent:writer:api:alice", WRITER)) == 2


# --- errors ------------------------------------------------------------------------------------


async def test_unknown_model_is_a_404_in_openai_shape(make_rig: MakeRig) -> None:
    rig = await make_rig()
    with pytest.raises(openai.NotFoundError) as info:
        await rig.client().chat.completions.create(
            model="ghost", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert "ghost" in info.value.message and "coder" in info.value.message


async def test_a_request_without_the_token_is_refused(make_rig: MakeRig) -> None:
    rig = await make_rig()
    wrong = rig.client(api_key="wrong")
    with pytest.raises(openai.AuthenticationError):
        await wrong.models.list()
    async with aiohttp.ClientSession() as http, http.get(f"{rig.base_url}/models") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    assert rig.backends[CODER].calls == 0


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("not json", "JSON"),
        ([], "object"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "coder", "messages": []}, "messages"),
        ({"model": "coder", "messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"model": "coder", "messages": [{"role": "user", "content": 3}]}, "content"),
        (
            {
                "model": "coder",
                "messages": [{"role": "user", "content": [{"type": "image_url", "x": 1}]}],
            },
            "text parts",
        ),
        ({"model": "coder", "messages": [{"role": "assistant", "content": "x"}]}, "last"),
        ({"model": "coder", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n:"),
        ({"model": "coder", "messages": [{"role": "user", "content": "x"}], "stream": 1}, "stream"),
    ],
)
async def test_a_bad_body_is_a_400(make_rig: MakeRig, body: Any, needle: str) -> None:
    rig = await make_rig()
    status, _, text = await rig.post(body)
    assert status == 400
    error = json.loads(text)["error"]
    assert error["code"] == "invalid_request" and needle in error["message"]
    assert rig.backends[CODER].calls == 0


async def test_a_failing_backend_is_a_502_the_client_does_not_retry(make_rig: MakeRig) -> None:
    rig = await make_rig(coder=ScriptedBackend(chunks=(), error="the model is down"))
    client = rig.client(max_retries=2)  # the official client retries 5xx unless told not to
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model="coder", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 502 and info.value.code == "backend_error"
    assert "the model is down" in info.value.message
    assert info.value.response.headers["x-should-retry"] == "false"
    assert rig.backends[CODER].calls == 1
    # Streamed, but failing before anything was said: the same error, with its status.
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="coder", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert rig.backends[CODER].calls == 2


async def test_a_failure_mid_stream_is_an_error_event_then_done(make_rig: MakeRig) -> None:
    rig = await make_rig(coder=ScriptedBackend(chunks=("partial ",), hold=0.1, error="it broke"))
    stream = await rig.client().chat.completions.create(
        model="coder", messages=[{"role": "user", "content": "go"}], stream=True
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "partial "
    assert "it broke" in info.value.message

    status, _, text = await rig.post(
        {"model": "coder", "messages": [{"role": "user", "content": "go"}], "stream": True}
    )
    assert status == 200
    events = _events(text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "backend_error"
    assert not any('"finish_reason": "stop"' in e for e in events)


async def test_a_turn_over_its_deadline_is_a_504(make_rig: MakeRig) -> None:
    rig = await make_rig(coder=ScriptedBackend(first_delay=5), policy=TurnPolicy(deadline_s=0.2))
    with pytest.raises(openai.APIStatusError) as info:
        await rig.client().chat.completions.create(
            model="coder", messages=[{"role": "user", "content": "slow"}]
        )
    assert info.value.status_code == 504 and info.value.code == "timeout"


# --- auto ----------------------------------------------------------------------------------------


async def test_auto_lets_the_routing_chain_pick_and_says_why(make_rig: MakeRig) -> None:
    rig = await make_rig()
    raw = await rig.client().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "@writer a poem please"}]
    )
    assert raw.headers["X-Salon-Agent"] == "writer"
    assert raw.headers["X-Salon-Route"].startswith("mention: ")
    assert raw.parse().model == "writer"
    assert rig.backends[WRITER].calls == 1 and rig.backends[CODER].calls == 0

    raw = await rig.client().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "some code for me"}]
    )
    assert raw.headers["X-Salon-Agent"] == "coder"
    assert raw.headers["X-Salon-Route"].startswith("lexical: ")

    with pytest.raises(openai.NotFoundError) as info:
        await rig.client().chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "zzz qqq"}]
        )
    assert info.value.code == "no_route"
    assert info.value.response.headers["X-Salon-Route"] == "nobody"


# --- the caller going away ----------------------------------------------------------------------


async def test_a_caller_that_leaves_does_not_stop_the_turn(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_routes, "DISCONNECT_POLL_S", 0.02)
    backend = ScriptedBackend(chunks=("late", " answer"), first_delay=0.3, hold=1.5)
    rig = await make_rig(coder=backend)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for stream in (False, True):
        body = {"model": "coder", "messages": [{"role": "user", "content": "x"}], "stream": stream}
        with pytest.raises(asyncio.TimeoutError):
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as http,
                http.post(f"{rig.base_url}/chat/completions", json=body, headers=headers),
            ):
                pass
        # The endpoint lets go of the turn while it still runs; the turn goes on.
        await eventually(lambda: rig.watched() == 0, timeout=1, what="the watcher to go")
        assert backend.finished == 0 and backend.running >= 1

    async def both_closed() -> bool:
        rows = await rig.store.db.fetchall("SELECT state FROM turns WHERE agent_id = 'coder'")
        return len(rows) == 2 and all(r["state"] == "replied" for r in rows)

    await eventually(both_closed, timeout=5, what="both turns to close")
    assert backend.finished == 2
