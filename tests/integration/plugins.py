"""In-process agents for the integration tests (``tests.integration.plugins:<name>``)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from salon.agents.backend import TurnRequest
from salon.agents.context import current_agent

Stream = Callable[[TurnRequest], AsyncIterator[str]]


def chunks(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Streams ``count`` numbered chunks, ``delay_s`` apart."""
    count, delay = int(options.get("count", 10)), float(options.get("delay_s", 0.1))

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        for i in range(count):
            yield f"c{i} "
            await asyncio.sleep(delay)

    return stream


def slow(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Says a little, then thinks forever (until stopped)."""

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        yield "thinking about it"
        await asyncio.sleep(3600)
        yield "never shown"

    return stream


def crash(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Kills its own process when asked to (a gateway crash in the middle of a turn)."""

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        if "crash" in request.text:
            os.kill(os.getpid(), signal.SIGKILL)
        yield f"fine: {request.text}"

    return stream


def introspect(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Answers with what it can see: current agent, persona, history, chat id."""

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        await asyncio.sleep(float(options.get("delay_s", 0)))
        seen = [m.content for m in request.history]
        yield (
            f"agent={current_agent().agent_id} persona={request.persona} "
            f"chat={request.chat_id} history={seen}"
        )

    return stream


def delegating(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Hands the message to ``options['to']`` and answers with what came back."""
    from salon.agents.context import current_delegator

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        delegator = current_delegator()
        assert delegator is not None, "no delegator in this turn"
        outcome = await delegator.delegate(str(options["to"]), f"task: {request.text}")
        yield f"{agent_id} got: {outcome.text}"

    return stream
