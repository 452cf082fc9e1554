"""Background work after a start goes through a Backstage: paced, behind the replies."""

from __future__ import annotations

import asyncio
import time

import pytest

from salon.pacing import Backstage


async def test_items_go_one_at_a_time_at_the_rate() -> None:
    door = Backstage(lambda: False, rate_per_s=50, max_defer_s=5)
    started = time.monotonic()
    await asyncio.gather(*(door.turn() for _ in range(5)))
    # Five items, 20 ms apart at least: the fifth not before 80 ms.
    assert time.monotonic() - started >= 0.08
    assert (door.passed, door.deferred) == (5, 0)


async def test_an_item_waits_while_replies_are_made() -> None:
    busy = True
    door = Backstage(lambda: busy, rate_per_s=100, max_defer_s=30)
    item = asyncio.create_task(door.turn())
    await asyncio.sleep(0.3)
    assert door.passed == 0, "let through while a turn ran"
    busy = False
    await asyncio.wait_for(item, 5)
    assert (door.passed, door.deferred) == (1, 1)


async def test_an_item_waits_no_longer_than_its_bound() -> None:
    door = Backstage(lambda: True, rate_per_s=100, max_defer_s=0.2)
    await asyncio.wait_for(door.turn(), 5)
    assert (door.passed, door.deferred) == (1, 1)


async def test_nothing_goes_through_during_the_grace() -> None:
    door = Backstage(lambda: False, rate_per_s=100, max_defer_s=1, grace_s=0.2)
    started = time.monotonic()
    await door.turn()
    assert time.monotonic() - started >= 0.2


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        Backstage(lambda: False, rate_per_s=0, max_defer_s=1)


async def test_under_steady_load_the_bound_counts_from_each_items_arrival() -> None:
    """Ten items queued while turns never end: all through after about one bound, not
    one bound each."""
    door = Backstage(lambda: True, rate_per_s=1000, max_defer_s=1.0)
    # About 1 s in all; one bound each would be 10 s (room for a loaded machine between).
    await asyncio.wait_for(asyncio.gather(*(door.turn() for _ in range(10))), 5.0)
    assert door.passed == 10
