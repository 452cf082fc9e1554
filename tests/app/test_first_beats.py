"""The door of the first heartbeats after a start: paced with many agents (a thousand
state events held every reply back), at once with a few (`salon who` right after a
start shows them online)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from salon.app.steps import FIRST_BEATS_GRACE_S, FIRST_BEATS_UNPACED, first_beats


def _hosted(n: int) -> list[Any]:
    return [SimpleNamespace(heartbeat=SimpleNamespace(interval_s=30.0)) for _ in range(n)]


async def test_a_few_agents_say_online_at_once() -> None:
    door = first_beats(_hosted(3), SimpleNamespace(in_flight=lambda: [1]))  # type: ignore[arg-type]
    started = time.monotonic()
    for _ in range(3):
        await door.turn()
    # Well under the grace the paced door waits first (2 s), with room for a loaded machine.
    assert time.monotonic() - started < FIRST_BEATS_GRACE_S / 2


async def test_many_agents_wait_a_grace_first() -> None:
    hosted = _hosted(FIRST_BEATS_UNPACED + 1)
    door = first_beats(hosted, SimpleNamespace(in_flight=lambda: []))  # type: ignore[arg-type]
    started = time.monotonic()
    await door.turn()
    assert time.monotonic() - started > 1.5
