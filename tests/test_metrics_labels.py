"""Labelled metrics on the path of every message: ``labels()`` is looked up in a dict
after the first call with those values, not worked out again by the library."""

from __future__ import annotations

from typing import Any

import prometheus_client
import pytest

from salon.metrics import REPLIES_SENT, TURN_SECONDS, TURNS


def test_labels_are_worked_out_once_per_values(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    original = prometheus_client.metrics.MetricWrapperBase.labels

    def counting(self: Any, *values: Any, **kw: Any) -> Any:
        asked.append((values, kw))
        return original(self, *values, **kw)

    monkeypatch.setattr(prometheus_client.metrics.MetricWrapperBase, "labels", counting)
    first = TURNS.labels(agent="cache-test", state="replied")
    for _ in range(3):
        assert TURNS.labels(agent="cache-test", state="replied") is first
    assert len(asked) == 1
    other = TURNS.labels(agent="cache-test", state="failed")
    assert other is not first and len(asked) == 2
    # The children are the library's own: counted and exported as before.
    before = first._value.get()
    TURNS.labels(agent="cache-test", state="replied").inc()
    assert first._value.get() == before + 1
    text = prometheus_client.generate_latest().decode()
    assert 'salon_turns_total{agent="cache-test",state="replied"}' in text
    assert REPLIES_SENT.labels(agent="cache-test") is REPLIES_SENT.labels(agent="cache-test")
    TURN_SECONDS.labels(agent="cache-test", outcome="replied").observe(0.1)
