"""The LLM router against a real local OpenAI-compatible server (FakeOpenAI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs
from tests.agents.fakes import FakeOpenAI, serve, unused_port
from tests.routing.helpers import AGENTS, CODER, RESEARCHER, ROUTER_ID, ctx

from salon.config.models import RouterConfig
from salon.routing.ai import PLACEHOLDER_API_KEY, AIChoice, AIRouter, parse_answer
from salon.routing.router import Reason, Router

ANSWER = '{"agent": "researcher", "reason": "asks for papers"}'


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI(chunks=[ANSWER])


@pytest.fixture
async def ai(fake: FakeOpenAI) -> AsyncIterator[AIRouter]:
    async with serve(fake.app()) as url:
        # A local endpoint gets a key only when the config names its variable.
        config = RouterConfig(
            model="test-model", base_url=f"{url}/v1", timeout_s=5, api_key_env="ROUTER_KEY"
        )
        router = AIRouter.from_config(config, env={"ROUTER_KEY": "sk-router"})
        yield router
        await router.aclose()


def router_with(ai: AIRouter | None) -> Router:
    return Router(AGENTS, router_user_id=ROUTER_ID, ai=ai)


async def test_llm_picks_with_reason(fake: FakeOpenAI, ai: AIRouter) -> None:
    decision = await router_with(ai).route(ctx("find me something on transformers"))
    assert decision.agents == ("researcher",)
    assert decision.reason is Reason.AI_ROUTER
    assert decision.detail == "asks for papers"
    [request] = fake.requests
    assert request.headers["Authorization"] == "Bearer sk-router"
    body = request.body
    assert body["model"] == "test-model"
    assert body["stream"] is False
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert user == {"role": "user", "content": "find me something on transformers"}
    assert system["role"] == "system"
    for agent in AGENTS:
        assert json.dumps(agent.agent_id) in system["content"]
        assert agent.label in system["content"]
        assert agent.description in system["content"]


async def test_a_local_router_never_gets_the_openai_key(fake: FakeOpenAI) -> None:
    async with serve(fake.app()) as url:
        config = RouterConfig(model="test-model", base_url=f"{url}/v1", timeout_s=5)
        assert config.api_key_env is None
        router = AIRouter.from_config(config, env={"OPENAI_API_KEY": "sk-real-openai"})
        try:
            await router_with(router).route(ctx("find me something on transformers"))
        finally:
            await router.aclose()
    [request] = fake.requests
    assert request.headers["Authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


async def test_only_candidates_in_the_room_are_offered(fake: FakeOpenAI, ai: AIRouter) -> None:
    room = frozenset({"coder", "researcher"})
    await router_with(ai).route(ctx("hi", agents_in_room=room))
    system = fake.requests[0].body["messages"][0]["content"]
    assert '"coder"' in system and '"researcher"' in system and '"home"' not in system


@pytest.mark.parametrize(
    "answer",
    [
        "I think the researcher should do it.",
        '{"agent": "ghost", "reason": "no"}',
        '{"agent": null}',
        "[1, 2]",
        "",
    ],
)
async def test_garbage_answer_falls_back_to_lexical(
    fake: FakeOpenAI, ai: AIRouter, answer: str
) -> None:
    fake.chunks = [answer]
    with capture_logs() as logs:
        decision = await router_with(ai).route(ctx("review this python script"))
    assert (decision.agents, decision.reason) == (("coder",), Reason.LEXICAL)
    assert [e["event"] for e in logs] == ["routing.ai_fallback"]


@pytest.mark.parametrize("status", [401, 429, 500, 503])
async def test_server_errors_fall_back_to_lexical(
    fake: FakeOpenAI, ai: AIRouter, status: int
) -> None:
    fake.fail_with = [status]
    decision = await router_with(ai).route(ctx("review this python script"))
    assert (decision.agents, decision.reason) == (("coder",), Reason.LEXICAL)


async def test_unknown_model_falls_back(fake: FakeOpenAI, ai: AIRouter) -> None:
    fake.models = {"other"}
    decision = await router_with(ai).route(ctx("summarise the papers"))
    assert (decision.agents, decision.reason) == (("researcher",), Reason.LEXICAL)


async def test_server_down_falls_back_to_lexical() -> None:
    ai = AIRouter(model="m", base_url=f"http://127.0.0.1:{unused_port()}/v1", timeout_s=2)
    try:
        with capture_logs() as logs:
            decision = await router_with(ai).route(ctx("turn on the lights"))
    finally:
        await ai.aclose()
    assert (decision.agents, decision.reason) == (("home",), Reason.LEXICAL)
    assert "cannot reach" in logs[0]["problem"]


async def test_slow_server_hits_the_time_limit(fake: FakeOpenAI) -> None:
    fake.delay_s = 2
    async with serve(fake.app()) as url:
        ai = AIRouter(model="test-model", base_url=f"{url}/v1", timeout_s=0.2)
        with capture_logs() as logs:
            decision = await router_with(ai).route(ctx("turn on the lights"))
        await ai.aclose()
    assert decision.reason is Reason.LEXICAL
    assert "0.2 s" in logs[0]["problem"]


async def test_json_mode_rejected_then_asked_in_prose(fake: FakeOpenAI, ai: AIRouter) -> None:
    fake.fail_with = [400]
    fake.chunks = ['Sure! {"agent": "coder", "reason": "code"} Hope that helps.']
    decision = await router_with(ai).route(ctx("hello"))
    assert (decision.agents, decision.reason, decision.detail) == (
        ("coder",),
        Reason.AI_ROUTER,
        "code",
    )
    await router_with(ai).route(ctx("hello again"))
    modes = ["response_format" in r.body for r in fake.requests]
    assert modes == [True, False, False]


async def test_no_llm_call_with_a_single_candidate(fake: FakeOpenAI, ai: AIRouter) -> None:
    decision = await router_with(ai).route(ctx("hi", agents_in_room=frozenset({"home"})))
    assert (decision.agents, decision.reason) == (("home",), Reason.SOLE_AGENT)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"agent": "coder", "reason": "x"}', AIChoice("coder", "x")),
        ('{"agent": "Researcher"}', AIChoice("researcher", "")),
        ('{"agent": "@coder", "reason": "a\\nb"}', AIChoice("coder", "a b")),
        ('```json\n{"agent": "coder", "reason": 5}\n```', AIChoice("coder", "")),
        ('{"x": 1} then {"agent": "researcher", "reason": "r"}', AIChoice("researcher", "r")),
        ('{"agent": "coder", "reason": "' + "long " * 100 + '"}', None),
        ('{"agent": "home"}', None),  # not a candidate
        ("{not json", None),
        (None, None),
    ],
)
def test_parse_answer(text: str | None, expected: AIChoice | None) -> None:
    choice = parse_answer(text, (CODER, RESEARCHER))
    if text and "long" in text:
        assert choice is not None and len(choice.reason) == 200 and choice.reason.endswith("…")
    else:
        assert choice == expected


def test_from_config_requires_a_model() -> None:
    with pytest.raises(ValueError, match=r"router\.model"):
        AIRouter.from_config(RouterConfig())
