"""What a turn costs the event loop in tasks: a reply that arrives whole takes one
task (the backend's pump), never one per chunk wait; a turn that is not slow starts
no task for its typing signals (a timer does until then)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from salon.ids import AgentId, RoomId
from salon.turns.replies import ReplyTo
from salon.turns.signals import SlowSignals
from salon.turns.spec import TurnKind, TurnSpec
from salon.turns.stream import ReplyStream, ReplyTarget, StreamLimits


class Api:
    def __init__(self) -> None:
        self.typing: list[bool] = []

    async def send_event(self, room: str, etype: str, content: Any, *, txn_id: str) -> str:
        return "$reply"

    async def set_typing(self, room: str, typing: bool, timeout_ms: int = 0) -> None:
        self.typing.append(typing)


@pytest.fixture
async def tasks() -> AsyncIterator[list[str]]:
    """The names of the tasks started on the loop meanwhile."""
    started: list[str] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        started.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    yield started
    loop.set_task_factory(previous)


async def test_a_whole_reply_takes_one_task(tasks: list[str]) -> None:
    tasks.clear()  # the test itself runs as a task

    async def whole() -> AsyncIterator[str]:
        yield "all "
        yield "at once"

    target = ReplyTarget(RoomId("!r"), ReplyTo("$q"), "echo", "$q")
    stream = ReplyStream(Api(), target, StreamLimits())  # type: ignore[arg-type]
    assert await stream.run(whole()) == "all at once"
    assert len(tasks) == 1, tasks  # the pump; wait_for made one per queue.get


def _spec() -> TurnSpec:
    return TurnSpec("$q", AgentId("echo"), TurnKind.MESSAGE, RoomId("!r"), "@p:x", "hi", "s")


async def test_a_fast_turn_starts_no_signal_task(tasks: list[str]) -> None:
    tasks.clear()  # the test itself runs as a task
    api, slow = Api(), []
    signals = SlowSignals(api, _spec(), lambda: False, after_s=0.05, on_slow=slow.append)  # type: ignore[arg-type]
    signals.cancel()  # the turn ended first
    await asyncio.sleep(0.1)
    assert tasks == [] and slow == [] and api.typing == []


async def test_a_slow_turn_says_busy_and_clears_its_typing(tasks: list[str]) -> None:
    tasks.clear()  # the test itself runs as a task
    api, slow = Api(), []
    signals = SlowSignals(api, _spec(), lambda: False, after_s=0.01, on_slow=slow.append)  # type: ignore[arg-type]
    for _ in range(1000):  # up to 10 s on a loaded machine
        if api.typing:
            break
        await asyncio.sleep(0.01)
    assert slow == ["echo"] and api.typing == [True]
    signals.cancel()
    for _ in range(1000):
        if len(api.typing) == 2:
            break
        await asyncio.sleep(0.01)
    assert api.typing == [True, False]


async def test_a_turn_shown_in_time_is_not_slow(tasks: list[str]) -> None:
    tasks.clear()  # the test itself runs as a task
    api, slow = Api(), []
    signals = SlowSignals(api, _spec(), lambda: True, after_s=0.01, on_slow=slow.append)  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    signals.cancel()
    assert tasks == [] and slow == [] and api.typing == []
