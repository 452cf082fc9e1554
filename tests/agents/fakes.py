"""Real HTTP servers on loopback for the backend tests (no library is mocked).

- :class:`FakeOpenAI` speaks OpenAI chat completions (JSON and SSE streaming)
  and can be told to fail in the ways real servers do.
- :class:`FakeAgentService` is an upstream agent service for the ``http``
  backend (JSON and SSE replies, error modes).

Both record every request they receive. :func:`serve` runs an app on
127.0.0.1 on a free port and yields its base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    """One request a fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 on a free port; yield ``http://127.0.0.1:<port>``."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def unused_port() -> int:
    """A loopback port nothing listens on (connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _record(request: web.Request, into: list[Received]) -> Any:
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    into.append(Received(request.method, request.path, dict(request.headers), body))
    return body


async def _sse_response(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


def _drop(request: web.Request) -> None:
    """Close the connection under a chunked response: the body stays incomplete."""
    assert request.transport is not None
    request.transport.close()


_OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", None),
    429: ("Rate limit reached, slow down.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded.", "server_error", None),
}


@dataclass
class FakeOpenAI:
    """An OpenAI-compatible ``POST /v1/chat/completions`` with failure modes.

    - ``fail_with``: status codes answered to the next requests, one each, in order;
    - ``api_key``: when set, requests without ``Bearer <api_key>`` get 401;
    - unknown ``model`` (not in ``models``) gets 404 ``model_not_found``;
    - ``drop_after``: in streaming mode, send this many content chunks, then cut
      the connection;
    - ``delay_s``: wait before answering; ``chunk_delay_s``: between chunks.

    Tool calls (streaming mode only; all off by default):

    - ``tool_rounds``: each entry answers one request, in order, with tool calls
      instead of text — a list of ``{"name": ..., "arguments": str | dict, "id": ...}``
      (``id`` defaults to ``call_<request>_<i>``; ``"id": None`` sends none). Each
      call is streamed in pieces: id first, then the name, then the arguments in
      small slices; the response ends with ``tool_finish_reason``;
    - ``tool_text``: content chunks sent before the tool calls of each such round;
    - ``tool_call_index``: False leaves ``index`` out of the tool-call deltas (as
      some local servers do);
    - ``echo_tool_results``: a request whose last message is a ``tool`` message
      (and that no ``tool_rounds`` entry answers) gets ``"Result: "`` followed by
      the contents of its trailing tool messages joined with ``" | "``.
    """

    chunks: list[str] = field(default_factory=lambda: ["Hel", "lo", ", ", "world"])
    models: set[str] = field(default_factory=lambda: {"test-model"})
    api_key: str | None = None
    fail_with: list[int] = field(default_factory=list)
    drop_after: int | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    tool_rounds: list[list[dict[str, Any]]] = field(default_factory=list)
    tool_text: list[str] = field(default_factory=list)
    tool_finish_reason: str = "tool_calls"
    tool_call_index: bool = True
    echo_tool_results: bool = True

    def app(self) -> web.Application:
        """The aiohttp application to :func:`serve`."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        return app

    @staticmethod
    def _error(status: int, message: str, kind: str, code: str | None) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return web.json_response(body, status=status)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await _record(request, self.requests)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_with:
            status = self.fail_with.pop(0)
            return self._error(status, *_OPENAI_ERRORS.get(status, ("Failed.", "error", None)))
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, *_OPENAI_ERRORS[401])
        model = body.get("model")
        if model not in self.models:
            msg = f"The model `{model}` does not exist or you do not have access to it."
            return self._error(404, msg, "invalid_request_error", "model_not_found")
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(self.chunks)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response({**base, "object": "chat.completion", "choices": [choice]})
        resp = await _sse_response(request)

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        if self.tool_rounds:
            await self._send_tool_calls(send, self.tool_rounds.pop(0), len(self.requests))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        chunks = self.chunks
        messages = body.get("messages") or []
        if self.echo_tool_results and messages and messages[-1].get("role") == "tool":
            results: list[str] = []
            for message in reversed(messages):
                if message.get("role") != "tool":
                    break
                results.insert(0, str(message.get("content")))
            chunks = ["Result: ", " | ".join(results)]
        for i, text in enumerate(chunks):
            if self.drop_after is not None and i >= self.drop_after:
                _drop(request)
                return resp
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            await send({"content": text})
        await send({}, finish="stop")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _send_tool_calls(self, send: Any, calls: list[dict[str, Any]], number: int) -> None:
        for text in self.tool_text:
            await send({"content": text})
        for i, call in enumerate(calls):
            arguments = call.get("arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            call_id = call.get("id", f"call_{number}_{i}")
            where = {"index": i} if self.tool_call_index else {}
            head: dict[str, Any] = {**where, "type": "function", "function": {"arguments": ""}}
            if call_id is not None:
                head["id"] = call_id
            pieces: list[dict[str, Any]] = [
                head,
                {**where, "function": {"name": call["name"]}},
                *(
                    {**where, "function": {"arguments": arguments[j : j + 7]}}
                    for j in range(0, len(arguments), 7)
                ),
            ]
            for piece in pieces:
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                await send({"tool_calls": [piece]})
        await send({}, finish=self.tool_finish_reason)


@dataclass
class FakeAgentService:
    """An upstream agent service for the ``http`` backend, at ``POST /agent``.

    ``mode`` picks the answer: ``json`` (``{"reply": ...}``), ``sse`` (deltas,
    then ``{"done": true}``), ``sse-done`` (deltas, then ``data: [DONE]``),
    ``json-error``, ``sse-error`` (an ``event: error`` after the first delta),
    ``sse-truncated`` (deltas, then a clean end without done), ``status``
    (answer ``status`` with a short text body). ``delay_s`` waits first.
    The SSE answers use CRLF line ends, comments and a multi-line ``data``.
    """

    mode: str = "json"
    chunks: list[str] = field(default_factory=lambda: ["Bon", "jour", "!"])
    status: int = 502
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    # Sent with a ``json`` answer, when set (files the agent answers with).
    attachments: list[Any] | None = None

    def app(self) -> web.Application:
        """The aiohttp application to :func:`serve`."""
        app = web.Application()
        app.router.add_post("/agent", self._turn)
        return app

    async def _turn(self, request: web.Request) -> web.StreamResponse:
        await _record(request, self.requests)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.mode == "json":
            extra = {} if self.attachments is None else {"attachments": self.attachments}
            return web.json_response({"reply": "".join(self.chunks), **extra})
        if self.mode == "json-error":
            return web.json_response({"error": "the upstream model is out of credits"})
        if self.mode == "status":
            return web.Response(status=self.status, text="upstream exploded\n")
        resp = await _sse_response(request)
        await resp.write(b": hello, this is a comment\r\n\r\n")
        for i, text in enumerate(self.chunks):
            if i == 0:  # one event split over two data lines (joined by "\n": valid JSON)
                payload = '{"delta":\r\ndata: ' + json.dumps(text) + "}"
                await resp.write(f"data: {payload}\r\n\r\n".encode())
            else:
                await resp.write(f"data: {json.dumps({'delta': text})}\r\n\r\n".encode())
            if self.mode == "sse-error":
                await resp.write(b'event: error\r\ndata: {"error": "tool crashed"}\r\n\r\n')
                break
        if self.mode == "sse":
            await resp.write(b'data: {"done": true}\r\n\r\n')
        elif self.mode == "sse-done":
            await resp.write(b"data: [DONE]\r\n\r\n")
        await resp.write_eof()
        return resp
