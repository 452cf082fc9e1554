"""Bounds on turns, replies, routing and the openai backend: defaults and limits."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from pydantic import ValidationError

from salon._exceptions import ConfigError
from salon.config import OpenAIBackend, SalonConfig, parse_config
from salon.config.models import DispatchConfig, RoutingConfig, TurnsConfig


def make(**overrides: Any) -> SalonConfig:
    return SalonConfig.model_validate({"agents": {"echo": {"backend": "echo"}}, **overrides})


def test_defaults() -> None:
    config = make()
    assert config.turns == TurnsConfig(
        concurrency=32, per_agent=8, per_sender=4, deadline_s=600, max_reply_chars=20000
    )
    assert (config.turns.max_waiting_per_sender, config.turns.max_waiting_per_agent) == (32, 128)
    assert config.dispatch == DispatchConfig(max_rooms=32, per_room=16)
    assert config.replies.typing_after_s == 0.3
    assert config.routing == RoutingConfig(hop_limit=3)
    openai = OpenAIBackend(type="openai", model="m")
    assert openai.max_tokens == 2048
    assert openai.max_tool_calls_per_round == 8


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("turns", {"concurrency": 1, "per_agent": 1, "per_sender": 1}),
        ("turns", {"deadline_s": 0.5, "max_reply_chars": 100}),
        ("turns", {"max_waiting_per_sender": 1, "max_waiting_per_agent": 1}),
        ("dispatch", {"max_rooms": 1, "per_room": 1}),
        ("dispatch", {"max_rooms": 4096, "per_room": 1000}),
        ("replies", {"typing_after_s": 0}),
        ("routing", {"hop_limit": 1}),
        ("routing", {"hop_limit": 15}),
    ],
)
def test_accepted_at_the_bounds(section: str, values: dict[str, Any]) -> None:
    config = make(**{section: values})
    for key, value in values.items():
        assert getattr(getattr(config, section), key) == value


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("turns", {"concurrency": 0}, "greater than or equal to 1"),
        ("turns", {"per_agent": 0}, "greater than or equal to 1"),
        ("turns", {"per_sender": 0}, "greater than or equal to 1"),
        ("turns", {"deadline_s": 0}, "greater than 0"),
        ("turns", {"max_reply_chars": 99}, "greater than or equal to 100"),
        ("turns", {"concurency": 4}, "Extra inputs"),
        ("turns", {"max_waiting_per_sender": 0}, "greater than or equal to 1"),
        ("turns", {"max_waiting_per_agent": 0}, "greater than or equal to 1"),
        ("dispatch", {"max_rooms": 0}, "greater than or equal to 1"),
        ("dispatch", {"max_rooms": 4097}, "less than or equal to 4096"),
        ("dispatch", {"per_room": 0}, "greater than or equal to 1"),
        ("dispatch", {"max_room": 8}, "Extra inputs"),
        ("replies", {"typing_after_s": -0.1}, "greater than or equal to 0"),
        ("routing", {"hop_limit": 0}, "greater than or equal to 1"),
        ("routing", {"hop_limit": 16}, "less than or equal to 15"),
    ],
)
def test_rejected_out_of_bounds(section: str, values: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        make(**{section: values})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tool_calls_per_round": 0}, "greater than or equal to 1"),
        ({"max_tokens": 0}, "greater than 0"),
    ],
)
def test_openai_bounds(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        OpenAIBackend.model_validate({"type": "openai", "model": "m", **fields})


def test_openai_max_tokens_null_means_no_cap() -> None:
    assert OpenAIBackend(type="openai", model="m", max_tokens=None).max_tokens is None


def test_loader_points_at_the_bad_limit() -> None:
    text = textwrap.dedent(
        """\
        agents:
          echo: {backend: echo}
        turns:
          per_agent: 2
          deadline_s: -1
        routing: {hop_limit: 99}
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="salon.yaml")
    assert str(info.value).splitlines() == [
        "salon.yaml:5: turns.deadline_s: Input should be greater than 0",
        "salon.yaml:6: routing.hop_limit: Input should be less than or equal to 15",
    ]
