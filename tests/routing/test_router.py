"""The routing chain: each rule, their order, agent senders, building from config."""

from __future__ import annotations

import asyncio
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.agents.fakes import FakeOpenAI, serve
from tests.routing import sample_hooks
from tests.routing.helpers import AGENTS, CODER, ROUTER_ID, ctx

from salon.config import parse_config
from salon.roster import Roster
from salon.routing.ai import AIRouter
from salon.routing.context import Binding, MessageContext
from salon.routing.router import Reason, RouteDecision, Router, RoutingRules
from salon.routing.routes import RouteMatch, RouteRule

LLM_ANSWER = '{"agent": "researcher", "reason": "llm"}'


RULE_FIELDS = {f.name for f in fields(RoutingRules)}


def full_router(ai: AIRouter | None = None, **overrides: Any) -> Router:
    """Every rule configured: a route for @bob, a hook on "bug", AI, default home."""
    rules: dict[str, Any] = {
        "routes": [RouteRule(RouteMatch(user="@bob:*"), "home")],
        "hooks": [sample_hooks.pick_coder],
        "default_agent": "home",
    }
    rules.update({k: v for k, v in overrides.items() if k in RULE_FIELDS})
    rest = {k: v for k, v in overrides.items() if k not in RULE_FIELDS}
    return Router(AGENTS, router_user_id=ROUTER_ID, rules=RoutingRules(**rules), ai=ai, **rest)


async def test_mention_beats_binding() -> None:
    message = ctx("@researcher look", binding=Binding("coder", "agent"))
    decision = await full_router().route(message)
    assert decision == RouteDecision(("researcher",), Reason.MENTION, "researcher (@label)")


async def test_binding_beats_route() -> None:
    message = ctx("hi", sender="@bob:localhost", binding=Binding("coder", "agent"))
    decision = await full_router().route(message)
    assert decision == RouteDecision(("coder",), Reason.AGENT_ROOM, "agent room of coder")
    message = ctx("hi", sender="@bob:localhost", binding=Binding("researcher", "chat"))
    decision = await full_router().route(message)
    assert (decision.agents, decision.reason) == (("researcher",), Reason.CHAT_ROOM)


async def test_binding_to_an_agent_no_longer_configured_is_ignored() -> None:
    decision = await full_router().route(ctx("hi", binding=Binding("ghost", "chat")))
    assert decision.reason is Reason.DEFAULT


async def test_route_beats_hook() -> None:
    decision = await full_router().route(ctx("a bug", sender="@bob:localhost"))
    assert (decision.agents, decision.reason) == (("home",), Reason.ROUTE)


async def test_hook_beats_ai() -> None:
    decision = await full_router().route(ctx("a bug in python"))
    assert (decision.agents, decision.reason) == (("coder",), Reason.HOOK)


async def test_ai_beats_default() -> None:
    fake = FakeOpenAI(chunks=[LLM_ANSWER])
    async with serve(fake.app()) as url:
        ai = AIRouter(model="test-model", base_url=f"{url}/v1")
        decision = await full_router(ai).route(ctx("good morning"))
        await ai.aclose()
    assert decision == RouteDecision(("researcher",), Reason.AI_ROUTER, "llm")


async def test_lexical_beats_default() -> None:
    decision = await full_router().route(ctx("summarise this paper"))
    assert decision == RouteDecision(
        ("researcher",), Reason.LEXICAL, "score 2.0 ('summarise', 'paper')"
    )


async def test_default_when_nothing_else_decides() -> None:
    decision = await full_router().route(ctx("good morning"))
    assert decision == RouteDecision(("home",), Reason.DEFAULT)


async def test_default_beats_nobody_and_nobody_carries_router_addressed() -> None:
    router = full_router(default_agent=None)
    assert await router.route(ctx("good morning")) == RouteDecision((), Reason.NOBODY)
    decision = await router.route(ctx("@salon good morning"))
    assert decision == RouteDecision((), Reason.NOBODY, router_addressed=True)


async def test_router_addressed_is_carried_on_any_decision() -> None:
    decision = await full_router().route(ctx("@salon @coder hi"))
    assert (decision.agents, decision.router_addressed) == (("coder",), True)


async def test_sole_agent_in_the_room() -> None:
    decision = await full_router().route(ctx("good morning", agents_in_room=frozenset({"coder"})))
    assert decision == RouteDecision(("coder",), Reason.SOLE_AGENT)


async def test_sole_configured_agent_when_membership_unknown() -> None:
    router = Router(AGENTS[:1], router_user_id=ROUTER_ID)
    decision = await router.route(ctx("good morning", agents_in_room=frozenset()))
    assert decision == RouteDecision(("coder",), Reason.SOLE_AGENT)


async def test_all_agents_are_candidates_when_membership_unknown() -> None:
    router = full_router(default_agent=None, hooks=[])
    decision = await router.route(ctx("turn the heating up", agents_in_room=frozenset()))
    assert (decision.agents, decision.reason) == (("home",), Reason.LEXICAL)


async def test_no_known_agent_in_the_room_skips_the_ai_router() -> None:
    decision = await full_router().route(ctx("python", agents_in_room=frozenset({"stranger"})))
    assert decision.reason is Reason.DEFAULT


@pytest.mark.parametrize("binding", [None, Binding("researcher", "agent")])
async def test_agent_sender_without_mention_goes_to_nobody(binding: Binding | None) -> None:
    message = ctx(
        "python code please",
        sender="@salon_coder:localhost",
        sender_agent="coder",
        binding=binding,
    )
    decision = await full_router().route(message)
    assert (decision.agents, decision.reason) == ((), Reason.NOBODY)


async def test_agent_sender_mentioning_itself_only_goes_to_nobody() -> None:
    message = ctx("@coder done", sender="@salon_coder:localhost", sender_agent="coder")
    assert (await full_router().route(message)).reason is Reason.NOBODY


async def test_agent_sender_mentioning_another_agent() -> None:
    message = ctx("@researcher over to you", sender="@salon_coder:localhost", sender_agent="coder")
    decision = await full_router().route(message)
    assert (decision.agents, decision.reason) == (("researcher",), Reason.MENTION)


def test_unknown_default_agent_is_refused() -> None:
    with pytest.raises(ValueError, match="default_agent"):
        Router(AGENTS, router_user_id=ROUTER_ID, rules=RoutingRules(default_agent="ghost"))


CONFIG = """\
homeserver: {url: "http://127.0.0.1:8008", server_name: localhost}
router: {localpart: bot, model: test-model, base_url: "http://127.0.0.1:9/v1", timeout_s: 3}
agents:
  coder: {label: Coder, description: Writes code, localpart: dev, backend: echo}
  helper: {backend: echo}
routes:
  - {match: {room: "#ops:localhost"}, agent: helper}
select_agent: ["tests.routing.sample_hooks:pick_coder"]
default_agent: helper
"""


async def test_from_config(tmp_path: Path) -> None:
    config = parse_config(textwrap.dedent(CONFIG), base_dir=tmp_path)
    router = Router.from_config(config, Roster.from_config(config))
    try:
        assert [
            (a.agent_id, a.user_id, a.label, a.localpart, a.description) for a in router.agents
        ] == [
            ("coder", "@dev:localhost", "Coder", "dev", "Writes code"),
            ("helper", "@salon_helper:localhost", "Helper", "salon_helper", ""),
        ]
        assert router.router_user_id == "@bot:localhost"
        assert router.routes == (RouteRule(RouteMatch(room="#ops:localhost"), "helper"),)
        assert [h.name for h in router.hooks] == ["tests.routing.sample_hooks:pick_coder"]  # type: ignore[attr-defined]
        assert router.ai is not None and router.ai.model == "test-model"
        assert router.ai.timeout_s == 3
        assert router.default_agent == "helper"
        decision = await router.route(ctx("@dev hi", agents_in_room=frozenset({"coder"})))
        assert decision.agents == ("coder",)
        decision = await router.route(ctx("@bot hi", room_aliases=("#ops:localhost",)))
        assert (decision.reason, decision.detail, decision.router_addressed) == (
            Reason.ROUTE,
            "routes[0]",
            True,
        )
        decision = await router.route(ctx("a bug"))
        assert decision.detail == "hook tests.routing.sample_hooks:pick_coder"
    finally:
        await router.aclose()


async def test_from_config_without_model_has_no_ai(tmp_path: Path) -> None:
    text = 'homeserver: {url: "http://127.0.0.1:8008", server_name: localhost}\n'
    text += "agents: {coder: {backend: echo}}\n"
    config = parse_config(text, base_dir=tmp_path)
    router = Router.from_config(config, Roster.from_config(config))
    assert router.ai is None
    assert router.routes == () and router.hooks == () and router.default_agent is None
    await router.aclose()


_ids = st.sampled_from(["coder", "researcher", "home", "ghost", ""])
_text = st.text(max_size=200)
_user = st.one_of(_text, st.sampled_from([a.user_id for a in AGENTS] + [ROUTER_ID]))
contexts = st.builds(
    MessageContext,
    room_id=_text,
    sender=_user,
    body=st.one_of(_text, st.sampled_from(["@coder", "@salon", "python", "@Home, x"])),
    room_aliases=st.lists(_text, max_size=3).map(tuple),
    thread_root=st.none() | _text,
    formatted_body=st.none() | _text,
    mentioned_user_ids=st.lists(_user, max_size=3).map(tuple),
    agents_in_room=st.frozensets(_ids, max_size=4),
    binding=st.none() | st.builds(Binding, _ids, st.sampled_from(["agent", "chat"])),
    sender_agent=st.none() | _ids,
    platform=_text,
)
ROUTER = full_router(
    routes=[
        RouteRule(RouteMatch(room="#x:y", thread="*"), "coder"),
        RouteRule(RouteMatch(user="@[a-z]*:*", server="[!x]*"), "home"),
    ],
    hooks=[sample_hooks.explode, sample_hooks.unknown, sample_hooks.pick_coder],
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(contexts)
def test_arbitrary_contexts_never_raise(message: MessageContext) -> None:
    decision = asyncio.run(ROUTER.route(message))
    assert set(decision.agents) <= {a.agent_id for a in AGENTS}
    assert len(set(decision.agents)) == len(decision.agents)
    assert message.sender_agent not in decision.agents or message.sender_agent == ""
    assert (decision.reason is Reason.NOBODY) == (not decision.agents)


async def test_agent_messages_stop_at_the_hop_limit_even_when_they_mention() -> None:
    router = full_router(hop_limit=3)
    below = ctx("@researcher go on", sender=CODER.user_id, sender_agent="coder", hop=2)
    assert (await router.route(below)).agents == ("researcher",)
    at = ctx("@researcher go on", sender=CODER.user_id, sender_agent="coder", hop=3)
    decision = await router.route(at)
    assert (decision.agents, decision.reason) == ((), Reason.HOP_LIMIT)
    # A person's message carries no hops of its own.
    person = ctx("@researcher go on", hop=7)
    assert (await router.route(person)).agents == ("researcher",)


async def test_a_peer_agents_room_is_left_to_its_gateway_unless_mentioned() -> None:
    router = full_router(peer_rooms={"#salon-scout:other.org": "scout"})
    in_peer_room = ctx("hello", room_aliases=("#salon-scout:other.org",))
    decision = await router.route(in_peer_room)
    assert (decision.agents, decision.reason, decision.detail) == (
        (),
        Reason.PEER_ROOM,
        "room of scout",
    )
    mentioned = ctx("@coder hello", room_aliases=("#salon-scout:other.org",))
    assert (await router.route(mentioned)).agents == ("coder",)


async def test_a_new_chat_whose_person_picked_another_agent_is_stale() -> None:
    router = full_router()
    chat = Binding("coder", "chat")
    decision = await router.route(ctx("hi", binding=chat, selected_agent="home"))
    assert (decision.agents, decision.reason, decision.chat_owner) == (
        (),
        Reason.STALE_CHAT,
        "coder",
    )
    assert (await router.route(ctx("hi", binding=chat, selected_agent="coder"))).agents == (
        "coder",
    )
    # An agent's own room is not a `!new` chat: no stale gate there.
    room = Binding("coder", "agent")
    assert (await router.route(ctx("hi", binding=room, selected_agent="home"))).agents == ("coder",)
