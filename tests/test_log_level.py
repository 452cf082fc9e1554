"""A log call below the configured level costs next to nothing: it is dropped before
the processors make its time stamp and fields (several INFO calls run per message)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from salon import log as salon_log


@pytest.fixture
def stamps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each event the time stamper saw (the first costly processor)."""
    seen: list[str] = []
    original = structlog.processors.TimeStamper.__call__

    def counting(self: Any, logger: Any, name: str, event_dict: Any) -> Any:
        seen.append(str(event_dict.get("event")))
        return original(self, logger, name, event_dict)

    monkeypatch.setattr(structlog.processors.TimeStamper, "__call__", counting)
    yield seen
    salon_log.configure("warning")


def test_a_call_below_the_level_reaches_no_processor(stamps: list[str]) -> None:
    salon_log.configure("warning")
    log = structlog.get_logger("salon.test.level")
    log.info("dropped.early")
    log.warning("kept")
    assert stamps == ["kept"]


def test_a_call_below_the_level_returns_before_the_processor_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not even the chain that would drop it runs (a few microseconds a call, several
    calls a message): the level is checked first."""
    salon_log.configure("warning")
    proxied: list[str] = []
    original = structlog.stdlib.BoundLogger._proxy_to_logger

    def counting(self: Any, method_name: str, event: Any = None, *args: Any, **kw: Any) -> Any:
        proxied.append(str(event))
        return original(self, method_name, event, *args, **kw)

    monkeypatch.setattr(structlog.stdlib.BoundLogger, "_proxy_to_logger", counting)
    log = structlog.get_logger("salon.test.chain").bind(turn="t")
    log.debug("dropped.debug")
    log.info("dropped.info")
    log.warning("kept")
    assert proxied == ["kept"]
    salon_log.configure("info")
    try:
        log = structlog.get_logger("salon.test.chain.info")
        log.info("kept.info")
        log.debug("dropped.debug")
        assert proxied == ["kept", "kept.info"]
    finally:
        salon_log.configure("warning")
