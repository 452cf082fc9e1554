"""The streaming answer of ``/v1/chat/completions``: ``chat.completion.chunk``
server-sent events, ending in ``data: [DONE]``.

The turn's chunks are sent as they come. A failure before anything was sent is a
plain error answer with its status code; once the stream has started, an
``{"error": …}`` event and then ``[DONE]``. A caller that disconnects stops the turn.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from salon.api.openai_turn import ChatTurn, caller_gone
from salon.api.server import error_body
from salon.responses import api_error
from salon.turns.spec import OutcomeState


class _Events:
    """The SSE side of one streamed completion."""

    def __init__(self, turn: ChatTurn) -> None:
        self.turn = turn
        self.created = int(time.time())
        self.response = web.StreamResponse(
            headers={
                **turn.headers,
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        self.started = False

    async def start(self) -> None:
        """Send the headers and the first chunk (the assistant's role)."""
        if not self.started:
            self.started = True
            await self.response.prepare(self.turn.request)
            await self.chunk({"role": "assistant", "content": ""})

    async def send(self, data: Mapping[str, Any] | str) -> None:
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        await self.response.write(f"data: {payload}\n\n".encode())

    async def comment(self, text: str) -> None:
        await self.response.write(f": {text}\n\n".encode())

    def _chunk_object(self, **fields: Any) -> dict[str, Any]:
        """A ``chat.completion.chunk`` with ``fields`` after its envelope."""
        return {
            "id": self.turn.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.turn.spec.agent_id,
            **fields,
        }

    async def chunk(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> None:
        choice = {
            "index": 0,
            "delta": dict(delta),
            "finish_reason": finish_reason,
            "logprobs": None,
        }
        await self.send(self._chunk_object(choices=[choice], system_fingerprint=None))

    async def finish(self, text: str) -> None:
        await self.chunk({}, finish_reason="stop")
        if self.turn.chat.include_usage:
            await self.send(self._chunk_object(choices=[], usage=self.turn.usage(text)))
        await self.send("[DONE]")


async def stream(turn: ChatTurn, keepalive_s: float, poll_s: float) -> web.StreamResponse:
    """Run the turn and stream its chunks (an SSE comment after ``keepalive_s`` of silence).

    A caller that goes away (a failed write, or a closed connection seen every
    ``poll_s`` of silence) stops the turn: nobody would read the rest.
    """
    runner = turn.ctx.runner
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    watcher = runner.watchers.watch(turn.spec.key, on_chunk=queue.put_nowait)
    events = _Events(turn)
    try:
        await runner.submit(turn.spec)
        watcher.done.add_done_callback(lambda _: queue.put_nowait(None))
        sent: list[str] = []
        last_sent = loop.time()
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), poll_s)
            except TimeoutError:
                if caller_gone(turn.request):
                    break
                if loop.time() - last_sent >= keepalive_s:
                    await events.start()  # a slow first chunk: the caller sees the stream begin
                    await events.comment("keep-alive")
                    last_sent = loop.time()
                continue
            if item is None:
                break
            await events.start()
            sent.append(item)
            await events.chunk({"content": item})
            last_sent = loop.time()
        if not watcher.done.done():
            # The caller went away: `let_go` stops the turn; nobody reads an answer.
            return events.response if events.started else web.Response(status=499)
        outcome = watcher.done.result()
        shown = "".join(sent)
        if outcome.state is OutcomeState.FAILED:
            if not events.started:
                # Nothing was sent yet: a plain error answer, with its status code.
                return turn.failure_response(outcome)
            code, values = turn.failure(outcome)
            _status, message = api_error(code, **values)
            await events.send(error_body(code, message))
            await events.send("[DONE]")
            return events.response
        await events.start()
        if outcome.text.startswith(shown) and len(outcome.text) > len(shown):
            # What the runner added to the chunks (an empty-reply or a stopped marker).
            await events.chunk({"content": outcome.text[len(shown) :]})
        await events.finish(outcome.text)
        await events.response.write_eof()
    except ConnectionError:
        pass  # the caller went away: `let_go` stops the turn
    finally:
        turn.let_go(watcher)
    return events.response
