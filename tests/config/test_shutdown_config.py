"""The ``shutdown`` section: how long a graceful stop lets running turns finish."""

from __future__ import annotations

import textwrap

import pytest

from salon._exceptions import ConfigError
from salon.config import parse_config
from salon.config.models import SalonConfig, ShutdownConfig


def parse(section: str) -> SalonConfig:
    text = "agents:\n  echo: {backend: echo}\n" + textwrap.dedent(section)
    return parse_config(text, source="salon.yaml")


def test_default_drain_is_20_seconds() -> None:
    assert parse("").shutdown == ShutdownConfig(drain_s=20)


@pytest.mark.parametrize("value", [0, 2.5, 3600])
def test_accepted(value: float) -> None:
    assert parse(f"shutdown: {{drain_s: {value}}}\n").shutdown.drain_s == value


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        (
            "shutdown:\n  drain_s: -1\n",
            4,
            "shutdown.drain_s: Input should be greater than or equal to 0",
        ),
        (
            "shutdown:\n  drain_s: 3601\n",
            4,
            "shutdown.drain_s: Input should be less than or equal to 3600",
        ),
        (
            "shutdown:\n  drain: 5\n",
            4,
            "shutdown.drain: Extra inputs are not permitted (did you mean 'drain_s'?)",
        ),
    ],
)
def test_rejected_with_file_line_and_key(section: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(section)
    assert str(info.value).splitlines() == [f"salon.yaml:{line}: {message}"]
