"""Factories for the ``python`` backend tests (entry ``tests.agents.sample_plugin:<name>``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

from salon.agents.backend import TurnRequest


class WordStreamer:
    """The Backend interface itself: ``stream`` yields the reply word by word."""

    def __init__(self, agent_id: str, options: Mapping[str, Any]) -> None:
        self.agent_id = agent_id
        self.options = options
        self.prefix = str(options.get("prefix", ""))
        self.closed = False

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """Yield the prefix and each word of the message."""
        yield self.prefix
        for word in request.text.split():
            yield word + " "

    async def aclose(self) -> None:
        """Remember that the backend was closed."""
        self.closed = True


def object_factory(agent_id: str, options: Mapping[str, Any]) -> WordStreamer:
    """Shape 1: an object with a ``stream`` async generator."""
    return WordStreamer(agent_id, options)


def coroutine_factory(
    agent_id: str, options: Mapping[str, Any]
) -> Callable[[TurnRequest], Coroutine[Any, Any, str]]:
    """Shape 2: an async function returning the whole reply."""
    greeting = options.get("greeting", "hello")

    async def reply(request: TurnRequest) -> str:
        return f"{greeting} {request.sender}, {agent_id} here"

    return reply


def generator_factory(
    agent_id: str, options: Mapping[str, Any]
) -> Callable[[TurnRequest], AsyncIterator[str]]:
    """Shape 3: an async generator function."""
    times = int(options.get("times", 2))

    async def chunks(request: TurnRequest) -> AsyncIterator[str]:
        for i in range(times):
            yield f"{i}:{request.text};"

    return chunks


def failing_factory(agent_id: str, options: Mapping[str, Any]) -> Any:
    """A factory that fails at start-up."""
    raise RuntimeError("model file missing")


def raising_plugin_factory(
    agent_id: str, options: Mapping[str, Any]
) -> Callable[[TurnRequest], AsyncIterator[str]]:
    """A plugin that starts a reply, then raises."""

    async def chunks(request: TurnRequest) -> AsyncIterator[str]:
        yield "partial "
        raise ValueError("division by cucumber")

    return chunks


def sync_result_factory(agent_id: str, options: Mapping[str, Any]) -> Callable[..., str]:
    """A plugin that wrongly returns a plain string from a sync function."""
    return lambda request: "not async"


def useless_factory(agent_id: str, options: Mapping[str, Any]) -> int:
    """Returns something that cannot answer turns."""
    return 42


async def async_factory(agent_id: str, options: Mapping[str, Any]) -> WordStreamer:
    """An async factory (not supported: factories run at start-up, synchronously)."""
    return WordStreamer(agent_id, options)


NOT_CALLABLE = 42
