"""The non-streaming answer of ``/v1/chat/completions``: one ``chat.completion``.

A failed turn is an OpenAI-style error object: 502 ``backend_error`` or 504
``timeout``, with ``x-should-retry: false`` (the turn already ran).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from salon.api.openai_turn import ChatTurn, caller_gone
from salon.turns.spec import Outcome, OutcomeState
from salon.turns.watchers import TurnWatcher


def completion_body(turn: ChatTurn, outcome: Outcome, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object for a turn that ended with an answer."""
    return {
        "id": turn.completion_id,
        "object": "chat.completion",
        "created": created,
        "model": turn.spec.agent_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": turn.usage(outcome.text),
        "system_fingerprint": None,
    }


async def _wait_outcome(
    request: web.Request, watcher: TurnWatcher, poll_s: float
) -> Outcome | None:
    """The turn's outcome, or None if the caller disconnected first (checked every
    ``poll_s`` seconds)."""
    while True:
        done, _ = await asyncio.wait({watcher.done}, timeout=poll_s)
        if done:
            return watcher.done.result()
        if caller_gone(request):
            return None


async def complete(turn: ChatTurn, poll_s: float) -> web.StreamResponse:
    """Run the turn and answer with its ``chat.completion`` (or its error)."""
    runner = turn.ctx.runner
    watcher = runner.watchers.watch(turn.spec.key)
    try:
        await runner.submit(turn.spec)
        outcome = await _wait_outcome(turn.request, watcher, poll_s)
    finally:
        turn.let_go(watcher)
    if outcome is None:
        # Nobody reads it (nginx's "client closed request"); `let_go` stopped the turn.
        return web.Response(status=499)
    created = int(time.time())
    if outcome.state is OutcomeState.FAILED:
        return turn.failure_response(outcome)
    return web.json_response(completion_body(turn, outcome, created), headers=turn.headers)
