"""Factories for the ``python`` backend tests (entry ``tests.agents.sample_plugin:<name>``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

from salon.agents.backend import TurnRequest
from salon.agents.reply_files import ReplyFile

NOTE = ReplyFile("note.txt", "text/plain", b"a note")


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


def file_generator(agent_id: str, options: Mapping[str, Any]) -> Callable[..., Any]:
    """Yields text, a file between its chunks, more text."""

    async def chunks(request: TurnRequest) -> AsyncIterator[Any]:
        yield "here "
        yield NOTE
        yield "it is"

    return chunks


def file_returner(agent_id: str, options: Mapping[str, Any]) -> Callable[..., Any]:
    """Returns a list of text and files (``bad``: with a number in it)."""

    async def answer(request: TurnRequest) -> list[Any]:
        return ["see ", NOTE, "attached", *([7] if options.get("bad") else [])]

    return answer


NOT_CALLABLE = 42
