"""The ``store`` section's bounds: how long finished rows are kept, how many messages a
session keeps; and the API's port tries."""

from __future__ import annotations

import textwrap

import pytest

from salon._exceptions import ConfigError
from salon.config import parse_config
from salon.config.models import SalonConfig


def parse(section: str) -> SalonConfig:
    text = "agents:\n  echo: {backend: echo}\n" + textwrap.dedent(section)
    return parse_config(text, source="salon.yaml")


def test_defaults_keep_30_days_and_400_messages() -> None:
    store = parse("").store
    assert store.retention_days == 30 and store.max_session_messages == 400
    assert parse("").api is None and parse("api: {}\n").api.port_tries == 1  # type: ignore[union-attr]


def test_null_keeps_everything() -> None:
    store = parse("store: {retention_days: null, max_session_messages: null}\n").store
    assert store.retention_days is None and store.max_session_messages is None
    assert parse("store: {retention_days: 0.5}\n").store.retention_days == 0.5


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("store:\n  retention_days: 0\n", "store.retention_days: Input should be greater than 0"),
        ("store:\n  retention_days: -3\n", "store.retention_days: Input should be greater than 0"),
        (
            "store:\n  max_session_messages: 1\n",
            "store.max_session_messages: Input should be greater than or equal to 2",
        ),
        ("api:\n  port_tries: 0\n", "api.port_tries: Input should be greater than or equal to 1"),
    ],
)
def test_rejected_with_a_clear_message(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(section)
    assert str(info.value).splitlines() == [f"salon.yaml:4: {message}"]
