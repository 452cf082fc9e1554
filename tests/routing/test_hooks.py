"""``select_agent`` hooks: sync, async, callable objects, failures that never break routing."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs
from tests.routing import sample_hooks
from tests.routing.helpers import AGENTS, ROUTER_ID, ctx

from salon._exceptions import ConfigError
from salon.routing.hooks import NamedHook, SelectAgentHook, hook_name, load_hook
from salon.routing.router import Reason, Router, RoutingRules

PLUGIN = "tests.routing.sample_hooks"


def router(*hooks: SelectAgentHook, **kwargs: object) -> Router:
    rules = RoutingRules(hooks=hooks, **kwargs)  # type: ignore[arg-type]
    return Router(AGENTS, router_user_id=ROUTER_ID, rules=rules)


async def test_sync_hook_decides() -> None:
    decision = await router(sample_hooks.pick_coder).route(ctx("there is a bug"))
    assert decision.agents == ("coder",)
    assert decision.reason is Reason.HOOK
    assert decision.detail == f"hook {PLUGIN}:pick_coder"


async def test_async_hook_decides() -> None:
    decision = await router(sample_hooks.pick_by_server).route(ctx(sender="@bob:example.org"))
    assert (decision.agents, decision.reason) == (("researcher",), Reason.HOOK)


async def test_hooks_asked_in_order_until_one_decides() -> None:
    hooks = (sample_hooks.pick_coder, sample_hooks.pick_by_server, sample_hooks.always_home)
    assert (await router(*hooks).route(ctx("bug", sender="@b:example.org"))).agents == ("coder",)
    assert (await router(*hooks).route(ctx("hi", sender="@b:example.org"))).agents == (
        "researcher",
    )
    decision = await router(*hooks).route(ctx("hi"))
    assert (decision.agents, decision.detail) == (("home",), f"hook {PLUGIN}:always_home")


async def test_hook_receives_context_and_agents() -> None:
    seen = []

    def spy(message: object, agents: object) -> None:
        seen.append((message, agents))

    message = ctx("hello")
    await router(spy).route(message)
    assert seen == [(message, AGENTS)]


@pytest.mark.parametrize(
    ("hook", "event"),
    [
        (sample_hooks.explode, "routing.hook_failed"),
        (sample_hooks.unknown, "routing.hook_unknown_agent"),
        (sample_hooks.not_a_string, "routing.hook_unknown_agent"),
        (sample_hooks.slow, "routing.hook_timeout"),
    ],
)
async def test_bad_hook_is_logged_and_skipped(hook: SelectAgentHook, event: str) -> None:
    with capture_logs() as logs:
        r = router(hook, sample_hooks.always_home, hook_timeout_s=0.05)
        decision = await r.route(ctx("hi"))
    assert (decision.agents, decision.reason) == (("home",), Reason.HOOK)
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [event]


async def test_no_opinion_falls_through() -> None:
    decision = await router(sample_hooks.pick_coder).route(ctx("hi", agents_in_room=frozenset()))
    assert decision.reason is not Reason.HOOK


def test_names() -> None:
    assert hook_name(sample_hooks.pick_coder) == f"{PLUGIN}:pick_coder"
    assert hook_name(sample_hooks.picker) == f"{PLUGIN}:Picker"
    assert hook_name(NamedHook("a.b:c", sample_hooks.picker)) == "a.b:c"


async def test_load_hook_from_entry_point() -> None:
    hook = load_hook(f"{PLUGIN}:picker")
    assert hook.name == f"{PLUGIN}:picker"
    decision = await router(hook).route(ctx("hi"))
    assert (decision.agents, decision.detail) == (("home",), f"hook {PLUGIN}:picker")


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
        (f"{PLUGIN}:missing", "has no attribute 'missing'"),
        (f"{PLUGIN}:NOT_CALLABLE", "is not callable"),
        ("nocolon", "is not of the form"),
    ],
)
def test_load_hook_errors_name_the_key(entry: str, words: str) -> None:
    with pytest.raises(ConfigError, match=r"select_agent\.3: ") as info:
        load_hook(entry, key="select_agent.3")
    assert words in str(info.value)
