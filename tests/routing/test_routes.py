"""Declarative routes: each match key, combinations, first match wins."""

from __future__ import annotations

import pytest
from tests.routing.helpers import AGENTS, ROUTER_ID, ctx

from salon.config.models import RouteConfig
from salon.routing.context import MessageContext
from salon.routing.router import Reason, Router, RoutingRules
from salon.routing.routes import RouteMatch, RouteRule


@pytest.mark.parametrize(
    ("match", "message", "expected"),
    [
        (RouteMatch(room="!room"), ctx(), True),
        (RouteMatch(room="!other"), ctx(), False),
        (RouteMatch(room="#dev:localhost"), ctx(room_aliases=("#dev:localhost",)), True),
        (RouteMatch(room="#dev:localhost"), ctx(room_aliases=("#ops:localhost",)), False),
        (RouteMatch(room="#dev:localhost"), ctx(room_id="#dev:localhost"), True),
        (RouteMatch(thread="*"), ctx(thread_root="$root"), True),
        (RouteMatch(thread="*"), ctx(), False),
        (RouteMatch(thread="$root"), ctx(thread_root="$root"), True),
        (RouteMatch(thread="$root"), ctx(thread_root="$other"), False),
        (RouteMatch(thread="$root"), ctx(), False),
        (RouteMatch(user="@*:example.org"), ctx(sender="@bob:example.org"), True),
        (RouteMatch(user="@*:example.org"), ctx(sender="@bob:example.org.evil"), False),
        (RouteMatch(user="@bob:localhost"), ctx(sender="@bob:localhost"), True),
        (RouteMatch(user="@bob:localhost"), ctx(sender="@bobby:localhost"), False),
        (RouteMatch(user="@b?b:*"), ctx(sender="@bib:x"), True),
        (RouteMatch(server="example.org"), ctx(sender="@bob:example.org"), True),
        (RouteMatch(server="Example.ORG"), ctx(sender="@bob:example.org"), True),
        (RouteMatch(server="*.example.org"), ctx(sender="@bob:chat.example.org"), True),
        (RouteMatch(server="*.example.org"), ctx(sender="@bob:example.org"), False),
        (RouteMatch(server="localhost"), ctx(sender="@bob:localhost:8448"), False),
        (RouteMatch(server="localhost:*"), ctx(sender="@bob:localhost:8448"), True),
        (RouteMatch(platform="matrix"), ctx(), True),
        (RouteMatch(platform="telegram"), ctx(), False),
        (RouteMatch(platform="telegram"), ctx(platform="telegram"), True),
        # All given keys must match.
        (RouteMatch(room="!room", user="@alice:*"), ctx(), True),
        (RouteMatch(room="!room", user="@bob:*"), ctx(), False),
        (RouteMatch(room="!room", thread="*"), ctx(), False),
        (RouteMatch(), ctx(), True),
    ],
)
def test_match_keys(match: RouteMatch, message: MessageContext, expected: bool) -> None:
    assert match.matches(message) is expected


def test_server_of_sender() -> None:
    assert ctx(sender="@bob:example.org:8448").server == "example.org:8448"
    assert ctx(sender="garbage").server == ""


def test_rule_from_config() -> None:
    config = RouteConfig.model_validate(
        {"match": {"user": "@*:x.org", "thread": "*"}, "agent": "a"}
    )
    assert RouteRule.from_config(config) == RouteRule(RouteMatch(thread="*", user="@*:x.org"), "a")


async def test_first_matching_rule_wins_and_is_named() -> None:
    routes = [
        RouteRule(RouteMatch(user="@bob:*"), "home"),
        RouteRule(RouteMatch(server="example.org"), "researcher"),
        RouteRule(RouteMatch(server="*"), "coder"),
    ]
    router = Router(AGENTS, router_user_id=ROUTER_ID, rules=RoutingRules(routes=routes))
    decision = await router.route(ctx(sender="@carol:example.org"))
    assert (decision.agents, decision.reason, decision.detail) == (
        ("researcher",),
        Reason.ROUTE,
        "routes[1]",
    )
    decision = await router.route(ctx(sender="@bob:example.org"))
    assert (decision.agents, decision.detail) == (("home",), "routes[0]")
    decision = await router.route(ctx(sender="@dave:localhost"))
    assert (decision.agents, decision.detail) == (("coder",), "routes[2]")


def test_route_to_unknown_agent_is_refused() -> None:
    with pytest.raises(ValueError, match="routes\\[0\\]: unknown agent 'ghost'"):
        Router(
            AGENTS,
            router_user_id=ROUTER_ID,
            rules=RoutingRules(routes=[RouteRule(RouteMatch(), "ghost")]),
        )
