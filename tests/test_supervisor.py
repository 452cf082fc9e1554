"""Supervised loops restart alone, with growing backoff."""

import asyncio

from salon.supervisor import Backoff, LoopHandle, Supervisor


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    b = Backoff(initial_s=5, max_s=60, jitter=0.2)
    for failures, base in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (9, 60)]:
        delay = b.delay(failures)
        assert base * 0.8 <= delay <= base * 1.2


async def test_failing_loop_restarts_while_others_run() -> None:
    sup = Supervisor(Backoff(initial_s=0.01, max_s=0.05))
    runs = {"bad": 0, "good": 0}

    async def bad(handle: LoopHandle) -> None:
        runs["bad"] += 1
        raise RuntimeError("boom")

    async def good(handle: LoopHandle) -> None:
        while True:
            runs["good"] += 1
            handle.healthy()
            await asyncio.sleep(0.01)

    sup.spawn("bad", bad)
    sup.spawn("good", good)
    await asyncio.sleep(0.3)
    await sup.stop()
    assert runs["bad"] >= 3
    assert runs["good"] >= 10
    assert sup.handles["bad"].last_error == "RuntimeError: boom"
    assert sup.handles["good"].restarts == 0
