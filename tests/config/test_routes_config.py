"""Routing config: routes, select_agent hooks, the AI router, duplicate keys; all fail closed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from salon._exceptions import ConfigError
from salon.config import load_config, parse_config
from salon.config.models import RouteConfig, RouteMatchConfig, RouterConfig

HEAD = """\
agents:
  coder:
    backend: echo
  echo:
    backend: echo
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "salon.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value).replace(str(tmp_path / "salon.yaml"), "salon.yaml")


def test_routes_hooks_and_ai_router_load(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent(
        """\
        router: {model: small, base_url: "http://127.0.0.1:11434/v1/", api_key_env: null}
        routes:
          - match: {room: "#ops:localhost", thread: "*"}
            agent: echo
          - match: {user: "@*:example.org", server: example.org, platform: matrix}
            agent: coder
          - {match: {room: "!abc", thread: "$root"}, agent: coder}
        select_agent: ["tests.routing.sample_hooks:pick_coder"]
        """
    )
    config = parse_config(text, base_dir=tmp_path)
    assert config.router.base_url == "http://127.0.0.1:11434/v1"
    assert config.router.api_key_env is None
    assert config.router.timeout_s == 10
    assert [r.agent for r in config.routes] == ["echo", "coder", "coder"]
    assert config.routes[0].match == RouteMatchConfig(room="#ops:localhost", thread="*")
    assert config.select_agent == ["tests.routing.sample_hooks:pick_coder"]


def test_defaults() -> None:
    assert RouterConfig() == RouterConfig(model=None, base_url=None, timeout_s=10)
    assert RouterConfig().api_key_env == "OPENAI_API_KEY"
    # The OpenAI key goes to OpenAI only: another endpoint gets one when it names it.
    openai = RouterConfig(model="m", base_url="https://api.openai.com/v1")
    assert openai.api_key_env == "OPENAI_API_KEY"
    assert RouterConfig(model="m", base_url="http://10.0.0.5:8000/v1").api_key_env is None
    named = RouterConfig(model="m", base_url="http://10.0.0.5:8000/v1", api_key_env="LAN_KEY")
    assert named.api_key_env == "LAN_KEY"
    assert RouterConfig(model="").model == ""  # `${ROUTER_MODEL:-}`: off, no base_url needed


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        pytest.param(
            """\
            routes:
              - {match: {room: "!a"}, agent: echo}
              - {match: {room: "!b"}, agent: coder}
              - match: {room: "!c"}
                agent: x
            """,
            "salon.yaml:10: routes.2.agent: unknown agent 'x' (known: coder, echo)",
            id="route-unknown-agent",
        ),
        pytest.param(
            """\
            routes:
              - {match: {}, agent: echo}
            """,
            "salon.yaml:7: routes.0.match: give at least one of room, thread, user, server, "
            "platform",
            id="route-empty-match",
        ),
        pytest.param(
            """\
            routes:
              - agent: echo
            """,
            "salon.yaml:7: routes.0.match: Field required",
            id="route-no-match",
        ),
        pytest.param(
            """\
            routes:
              - {match: {room: "salon-coder"}, agent: echo}
            """,
            "salon.yaml:7: routes.0.match.room: Value error, 'salon-coder' is not a room id",
            id="route-bad-room",
        ),
        pytest.param(
            """\
            routes:
              - {match: {thread: "root"}, agent: echo}
            """,
            "salon.yaml:7: routes.0.match.thread: Value error, 'root' is not a thread root",
            id="route-bad-thread",
        ),
        pytest.param(
            """\
            routes:
              - {match: {user: "bob"}, agent: echo}
            """,
            "salon.yaml:7: routes.0.match.user: Value error, 'bob' is not a user id glob",
            id="route-bad-user-glob",
        ),
        pytest.param(
            """\
            routes:
              - {match: {romo: "!a"}, agent: echo}
            """,
            "routes.0.match.romo: Extra inputs are not permitted (did you mean 'room'?)",
            id="route-typo",
        ),
        pytest.param(
            """\
            select_agent:
              - tests.routing.sample_hooks:pick_coder
              - no_such_module_xyz:pick
            """,
            "salon.yaml:8: select_agent.1: cannot import module 'no_such_module_xyz': "
            "ModuleNotFoundError",
            id="hook-not-importable",
        ),
        pytest.param(
            """\
            select_agent: [tests.routing.sample_hooks:nope]
            """,
            "salon.yaml:6: select_agent.0: module 'tests.routing.sample_hooks' has no "
            "attribute 'nope'",
            id="hook-missing-attribute",
        ),
        pytest.param(
            """\
            select_agent: [tests.routing.sample_hooks:NOT_CALLABLE]
            """,
            "salon.yaml:6: select_agent.0: 'tests.routing.sample_hooks:NOT_CALLABLE' is not "
            "callable",
            id="hook-not-callable",
        ),
        pytest.param(
            """\
            select_agent: ["just a string"]
            """,
            "salon.yaml:6: select_agent.0: Value error, 'just a string' is not an entry point",
            id="hook-not-an-entry-point",
        ),
        pytest.param(
            """\
            router:
              model: gpt-4o-mini
            """,
            "salon.yaml:6: router.base_url: required when router.model is set",
            id="ai-router-without-base-url",
        ),
        pytest.param(
            """\
            router: {model: m, base_url: "ftp://x", timeout_s: 0}
            """,
            "salon.yaml:6: router.base_url: Value error, must be an http:// or https:// URL",
            id="ai-router-bad-url",
        ),
        pytest.param(
            """\
            default_agent: nobody
            """,
            "salon.yaml:6: default_agent: unknown agent 'nobody' (known: coder, echo)",
            id="default-agent-unknown",
        ),
    ],
)
def test_fail_closed_with_file_line_and_key(tmp_path: Path, tail: str, expected: str) -> None:
    message = error(tmp_path, HEAD + textwrap.dedent(tail))
    assert expected.replace("Value error, ", "") in message, message


def test_route_model_needs_a_match_key() -> None:
    with pytest.raises(ValueError, match="at least one of"):
        RouteConfig.model_validate({"match": {}, "agent": "a"})


def test_duplicate_agent_id(tmp_path: Path) -> None:
    text = """\
        agents:
          coder:
            backend: echo
          echo: {backend: echo}
          coder:
            backend: {type: echo, prefix: "2"}
        """
    message = error(tmp_path, text)
    assert message == "salon.yaml:5: duplicate key 'coder' (also at line 2)"


def test_duplicate_keys_anywhere_all_reported_in_line_order(tmp_path: Path) -> None:
    text = """\
        agents:
          echo: {backend: echo, backend: echo}
        routes:
          - match: {user: "@a:b", user: "@c:d"}
            agent: echo
        agents: {}
        """
    assert error(tmp_path, text).splitlines() == [
        "salon.yaml:2: duplicate key 'backend' (also at line 2)",
        "salon.yaml:4: duplicate key 'user' (also at line 4)",
        "salon.yaml:6: duplicate key 'agents' (also at line 1)",
    ]


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = """\
        x-base: &base {backend: echo, description: shared}
        agents:
          coder:
            <<: *base
            description: mine
          echo:
            <<: *base
        """
    config = parse_config(textwrap.dedent(text), base_dir=tmp_path)
    assert config.agents["coder"].description == "mine"
    assert config.agents["echo"].description == "shared"


def test_same_key_in_different_mappings_is_fine(tmp_path: Path) -> None:
    text = """\
        agents:
          coder: {backend: echo, label: A}
          echo: {backend: echo, label: B}
        """
    assert len(parse_config(textwrap.dedent(text), base_dir=tmp_path).agents) == 2


def test_distinct_typed_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = """\
        agents:
          echo: {backend: {type: echo, prefix: "1"}}
        x-map: {1: a, "1": b}
        """
    assert parse_config(textwrap.dedent(text), base_dir=tmp_path).agents
