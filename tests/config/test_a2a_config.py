"""``a2a_agents:`` (remote A2A agents to delegate to) and ``api.a2a`` / an agent's
``a2a:`` (agents served over A2A): parsing, checks, defaults."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from salon._exceptions import ConfigError
from salon.config import SalonConfig
from salon.coordination.a2a_client import RemoteAgent, remote_agents

REMOTE = {"url": "https://agents.example.org/a2a/helper/", "token_env": "HELPER_TOKEN"}


def make(**overrides: Any) -> SalonConfig:
    data: dict[str, Any] = {"agents": {"coder": {"backend": "echo"}, "writer": {"backend": "echo"}}}
    return SalonConfig.model_validate({**data, **overrides})


def test_remote_agents_are_delegation_targets() -> None:
    config = make(a2a_agents={"helper": REMOTE})
    assert config.delegation_targets("coder") == ["writer", "helper"]
    listed = make(
        agents={"coder": {"backend": "echo", "can_delegate_to": ["helper"]}},
        a2a_agents={"helper": REMOTE},
    )
    assert listed.delegation_targets("coder") == ["helper"]


def test_a_remote_needs_its_own_id_and_a_url() -> None:
    with pytest.raises(ValidationError, match="already an agent or peer"):
        make(a2a_agents={"writer": REMOTE})
    with pytest.raises(ValidationError, match="url"):
        make(a2a_agents={"helper": {"token_env": "X"}})
    with pytest.raises(ValidationError, match="invalid agent id"):
        make(a2a_agents={"Bad Id": REMOTE})


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = make(a2a_agents={"helper": REMOTE, "open": {"url": "http://127.0.0.1:9/"}})
    monkeypatch.delenv("HELPER_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="HELPER_TOKEN is not set"):
        remote_agents(config.a2a_agents, {})
    found = remote_agents(config.a2a_agents, {"HELPER_TOKEN": "tok-42"})
    assert found == {
        "helper": RemoteAgent("https://agents.example.org/a2a/helper", "tok-42"),
        "open": RemoteAgent("http://127.0.0.1:9", None),
    }
    assert "tok-42" not in repr(found["helper"])


def test_serving_over_a2a_is_off_unless_configured() -> None:
    assert not make().a2a_served("coder")  # no API at all
    assert not make(api={}).a2a_served("coder")
    on = make(
        api={"a2a": True},
        agents={"coder": {"backend": "echo", "a2a": False}, "w": {"backend": "echo"}},
    )
    assert not on.a2a_served("coder") and on.a2a_served("w") and not on.a2a_served("nobody")
    one = make(api={}, agents={"coder": {"backend": "echo", "a2a": True}})
    assert one.a2a_served("coder")
