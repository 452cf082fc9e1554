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
