"""The schema on its own: defaults, helpers and cross-field checks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from salon.config import (
    AccessConfig,
    AgentConfig,
    EchoBackend,
    HomeserverConfig,
    HttpBackend,
    OpenAIBackend,
    PythonBackend,
    SalonConfig,
)


def make(**overrides: Any) -> SalonConfig:
    data: dict[str, Any] = {
        "agents": {"coder": {"backend": {"type": "echo"}}, "echo": {"backend": "echo"}}
    }
    data.update(overrides)
    return SalonConfig.model_validate(data)


def test_defaults() -> None:
    config = make()
    assert config.homeserver is None
    assert config.space.alias == "salon"
    assert config.router.localpart == "salon"
    assert config.locale == "en"
    assert config.heartbeat.ttl_s > config.heartbeat.interval_s
    assert config.sync.backoff_initial_s == 5 and config.sync.backoff_max_s == 60
    assert config.store.url == "sqlite:///salon-data/salon.db"
    assert config.store.sqlite_path == "salon-data/salon.db"


def test_backend_shorthand_and_union() -> None:
    config = make(
        agents={
            "a": {"backend": "echo"},
            "b": {"backend": {"type": "openai", "model": "qwen2.5"}},
            "c": {"backend": {"type": "http", "base_url": "http://127.0.0.1:9000/"}},
            "d": {"backend": {"type": "python", "entry": "pkg.mod:factory"}},
        }
    )
    backends = [agent.backend for agent in config.agents.values()]
    assert [type(b) for b in backends] == [EchoBackend, OpenAIBackend, HttpBackend, PythonBackend]
    assert isinstance(backends[1], OpenAIBackend)
    assert backends[1].api_key_env == "OPENAI_API_KEY"
    assert isinstance(backends[2], HttpBackend)
    assert backends[2].base_url == "http://127.0.0.1:9000"  # trailing slash dropped


def test_agent_id_and_label() -> None:
    config = make(
        agents={"coder": {"backend": "echo"}, "echo": {"label": "Echo!", "backend": "echo"}}
    )
    assert config.agents["coder"].id == "coder"
    assert config.agents["coder"].display_label == "Coder"
    assert config.agents["echo"].display_label == "Echo!"


def test_shared_agent_instance_keeps_each_id() -> None:
    agent = AgentConfig(backend=EchoBackend(type="echo"))
    config = SalonConfig(agents={"one": agent, "two": agent})
    assert config.agents["one"].id == "one"
    assert config.agents["two"].id == "two"


def test_naming_helpers() -> None:
    config = make(
        agents={
            "coder": {"backend": "echo"},
            "bot": {"backend": "echo", "localpart": "custom"},
            "ext": {"backend": "echo", "matrix": {"user_id": "@ext_bot:example.org"}},
        }
    )
    assert config.agent_localpart("coder") == "salon_coder"
    assert config.agent_localpart("bot") == "custom"
    assert config.agent_localpart("ext") == "ext_bot"
    assert config.agent_user_id("coder", "localhost") == "@salon_coder:localhost"
    assert config.agent_room_alias_localpart("coder") == "salon-coder"
    assert config.agent_room_alias("coder", "localhost") == "#salon-coder:localhost"
    assert config.router_user_id("localhost") == "@salon:localhost"
    assert config.space_alias("localhost") == "#salon:localhost"
    assert config.lobby_alias("localhost") == "#salon-lobby:localhost"
    with pytest.raises(KeyError, match="unknown agent 'nope'"):
        config.agent_localpart("nope")


def test_access_fails_closed_to_all_but_the_admins() -> None:
    nobody = AccessConfig()
    assert nobody.allowed_patterns() == []
    assert not nobody.is_allowed("@bob:localhost")
    assert nobody.describe() == "nobody (set access.admins or access.allowed_users)"
    admins = make(access={"admins": ["@root:localhost"]}).access
    assert admins.is_allowed("@root:localhost")
    assert not admins.is_allowed("@bob:localhost")  # same server, still not allowed
    assert admins.describe() == "admins only (@root:localhost)"


def test_access_opened_explicitly_with_globs() -> None:
    server = make(access={"allowed_users": ["@*:localhost"], "admins": ["@root:elsewhere"]})
    assert server.access.is_allowed("@bob:localhost")
    assert not server.access.is_allowed("@bob:evil.org")
    assert server.access.is_allowed("@root:elsewhere")  # admins always may
    assert server.access.describe() == "admins (@root:elsewhere) and @*:localhost"
    explicit = AccessConfig(allowed_users=["@bob:*"], admins=["@root:elsewhere"])
    assert explicit.allowed_patterns() == ["@bob:*"]
    assert explicit.is_allowed("@bob:evil.org")
    assert not explicit.is_allowed("@alice:localhost")
    assert explicit.is_admin("@root:elsewhere") and not explicit.is_admin("@bob:x")


def test_frozen_and_extra_forbidden() -> None:
    config = make()
    with pytest.raises(ValidationError):
        config.locale = "ru"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        make(agnets={})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"default_agent": "x"}, "default_agent: unknown agent 'x' (known: coder, echo)"),
        ({"agents": {}}, "at least one agent is required"),
        ({"agents": {"Bad": {"backend": "echo"}}}, "invalid agent id 'Bad'"),
        ({"agents": {"a" * 33: {"backend": "echo"}}}, "invalid agent id"),
        (
            {"agents": {"a": {"backend": "echo", "can_delegate_to": ["zz"]}}},
            "agents.a.can_delegate_to.0: unknown agent 'zz'",
        ),
        (
            {"agents": {"a": {"backend": "echo", "can_delegate_to": ["a"]}}},
            "cannot delegate to itself",
        ),
        (
            {
                "agents": {
                    "a": {"backend": "echo"},
                    "b": {"backend": "echo", "localpart": "salon_a"},
                }
            },
            "localpart 'salon_a' is already used by agent 'a'",
        ),
        ({"router": {"localpart": "salon_coder"}}, "already used by the router"),
        ({"agents": {"lobby": {"backend": "echo"}}}, "already used by the lobby"),
        ({"naming": {"agent_localpart": "salon"}}, "must contain '{id}'"),
        ({"naming": {"agent_room_alias": "Salon {id}"}}, "does not make a valid localpart"),
        ({"heartbeat": {"interval_s": 30, "ttl_s": 30}}, "must be greater than interval_s"),
        ({"heartbeat": {"interval_s": 0}}, "greater than 0"),
        ({"sync": {"backoff_initial_s": 10, "backoff_max_s": 5}}, "at least backoff_initial_s"),
        ({"sync": {"startup_jitter_s": -1}}, "greater than or equal to 0"),
        ({"store": {"url": "postgresql://"}}, "needs at least a host"),
        ({"store": {"pool_size": 0}}, "greater than or equal to 1"),
        ({"store": {"url": "mysql://db"}}, "sqlite:///"),
        ({"locale": "de"}, "'en' or 'ru'"),
        ({"access": {"admins": ["@*:localhost"]}}, "not a full user id"),
        ({"access": {"allowed_users": ["bob"]}}, "not a user id glob"),
    ],
)
def test_invalid(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        make(**overrides)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"mode": "bridge"}, "'client' or 'appservice'"),
        ({"mode": "appservice", "appservice": {"listen": "9010"}}, "must be host:port"),
        ({"url": "ftp://host"}, "http:// or https://"),
        ({"server_name": "bad name"}, "not a server name"),
        (
            {"registration_shared_secret": "s", "registration_shared_secret_env": "S"},
            "not both",
        ),
    ],
)
def test_homeserver_invalid(fields: dict[str, Any], expected: str) -> None:
    data = {"url": "http://127.0.0.1:8008", "server_name": "localhost", **fields}
    with pytest.raises(ValidationError, match=expected):
        HomeserverConfig.model_validate(data)


def test_appservice_mode_defaults() -> None:
    hs = HomeserverConfig.model_validate(
        {"url": "http://127.0.0.1:8008", "server_name": "localhost", "mode": "appservice"}
    )
    assert hs.appservice is not None
    assert hs.appservice.as_token_env == "SALON_AS_TOKEN"
    assert hs.appservice.public_url == "http://127.0.0.1:9010"


def test_homeserver_secret_not_in_repr() -> None:
    hs = HomeserverConfig(
        url="https://matrix.example.org/",
        server_name="example.org",
        registration_shared_secret="s3",
    )
    assert hs.url == "https://matrix.example.org"
    assert "s3" not in repr(hs)


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ({"type": "python", "entry": "not an entry"}, "package.module:factory"),
        ({"type": "openai"}, "model"),
        ({"type": "openai", "model": "m", "temperature": 3}, "less than or equal to 2"),
        ({"type": "echo", "delay_s": -1}, "greater than or equal to 0"),
        ({"type": "http"}, "base_url"),
    ],
)
def test_backend_invalid(backend: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        AgentConfig.model_validate({"backend": backend})


def test_round_trip() -> None:
    config = make(
        default_agent="echo",
        access={"allowed_users": ["@*:localhost"]},
        peers={"far": "@salon_far:example.org"},
    )
    again = SalonConfig.model_validate(config.model_dump())
    assert again == config
    assert again.agents["echo"].id == "echo"
    assert again.peers["far"].id == "far"


def test_models_module_still_exports_every_model() -> None:
    # Other modules import these from salon.config.models; the split must keep them there.
    from salon.config import models

    names = [
        "AccessConfig", "AgentConfig", "BackendConfig", "ConfigProblems", "DelegationConfig",
        "EchoBackend", "HeartbeatConfig", "HomeserverConfig", "HttpBackend",
        "IdentityCredentials", "Loc", "NamingConfig", "OpenAIBackend", "PeerConfig",
        "PythonBackend", "RateLimitConfig", "RepliesConfig", "RouteConfig", "RouteMatchConfig",
        "RouterConfig", "RoutingConfig", "SalonConfig", "SpaceConfig", "StoreConfig",
        "SyncConfig", "TeamBackend", "TeamConfig", "TurnsConfig",
    ]  # fmt: skip
    assert [n for n in names if not hasattr(models, n)] == []


def test_router_credentials() -> None:
    config = make(router={"matrix": {"user_id": "@salon:example.org", "password_env": "PW"}})
    assert config.router.matrix is not None
    assert config.router.matrix.password_env == "PW"
    with pytest.raises(ValidationError, match=r"router\.matrix\.user_id: does not match"):
        make(router={"matrix": {"user_id": "@other:example.org"}})
