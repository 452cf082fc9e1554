"""The OpenAI-compatible routes' errors, in OpenAI's shape: unknown model, no token,
bad bodies, a failing backend (before and during a stream), a turn over its deadline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from tests.api.openai_rig import MakeRig, _events, rig_maker
from tests.gateway.helpers import CODER, ScriptedBackend

from salon.turns.spec import TurnPolicy


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    async for make in rig_maker(tmp_path):
        yield make


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
