"""The OpenAI-compatible routes on a real turn runner (real SQLite store, scripted
backends, a fake homeserver the API turns never touch), called with the official
``openai`` client and, where the wire format matters, with raw HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from tests.api.openai_rig import MakeRig, _events, rig_maker
from tests.gateway.helpers import CODER, WRITER, ScriptedBackend

from salon.store.records import TurnState


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    async for make in rig_maker(tmp_path):
        yield make


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
