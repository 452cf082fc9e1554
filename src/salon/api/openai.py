"""Routes: the OpenAI-compatible surface (``/v1/models``, ``/v1/chat/completions``).

Any OpenAI client can use an agent (or a team) as a ``model``. A request is one
ledgered API turn of that agent in the one turn runner, with the same slots,
deadline, stop and delegation as any other turn; the caller gets its text, as one
``chat.completion`` or as ``chat.completion.chunk`` server-sent events ending in
``data: [DONE]``.

- ``model: auto`` lets the routing chain pick the agent; the decision is in the
  ``X-Salon-Route`` (``<reason>: <detail>``) and ``X-Salon-Agent`` headers.
- Stateless by default: the request's ``messages`` are the history (a ``system``
  message too), the last one (the person's) is the turn's text. With an
  ``X-Salon-Session: <s>`` header (or the ``user`` field) the turn uses the
  durable session ``agent:<id>:api:<s>`` instead, like a room's session: only the
  last message is sent, the session holds the rest.
- A failing backend gives an OpenAI-style error object: 502 ``backend_error``, 504
  ``timeout`` (with ``x-should-retry: false``: the turn already ran); once a
  stream has started, an ``{"error": …}`` event and then ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from salon.agents.history import estimate_tokens
from salon.api.context import ApiContext
from salon.api.server import CONTEXT, ApiError, error_body
from salon.gateway.turns import TurnRunner
from salon.gateway.turnspec import Outcome, OutcomeState, TurnKind, TurnSpec
from salon.gateway.watchers import TurnWatcher
from salon.ids import AgentId, RoomId
from salon.responses import api_error
from salon.routing.context import MessageContext

AUTO = "auto"
SESSION_HEADER = "X-Salon-Session"
ROUTE_HEADER = "X-Salon-Route"
AGENT_HEADER = "X-Salon-Agent"
TURN_HEADER = "X-Salon-Turn"
# Roles a request may use; ``developer`` (newer OpenAI clients) is a system message.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_SESSION_CHARS = 200
# A stream with nothing to say for this long sends an SSE comment (proxies, idle timeouts).
KEEPALIVE_S = 15.0
# How often a non-streaming request checks whether its caller is still there.
DISCONNECT_POLL_S = 1.0


@dataclass(frozen=True)
class ChatRequest:
    """A validated ``/v1/chat/completions`` body."""

    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content), roles normalised
    stream: bool = False
    include_usage: bool = False
    session: str | None = None  # the durable session's name, if any
    user: str | None = None

    @property
    def text(self) -> str:
        """The turn's message: the last one."""
        return self.messages[-1][1]

    @property
    def history(self) -> tuple[tuple[str, str], ...]:
        """The conversation before it."""
        return self.messages[:-1]


def _invalid(detail: str) -> ApiError:
    return ApiError("invalid_request", detail=detail)


def _content(value: Any, where: str) -> str:
    """A message's text: a string, or a list of ``{type: text, text}`` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise _invalid(f"{where}.content[{i}]: only text parts are supported")
            text = part.get("text")
            if not isinstance(text, str):
                raise _invalid(f"{where}.content[{i}].text: must be a string")
            parts.append(text)
        return "\n".join(parts)
    raise _invalid(f"{where}.content: must be a string or a list of text parts")


def _session_name(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{where}: must be a string")
    name = value.strip()
    if not name:
        return None
    if len(name) > MAX_SESSION_CHARS or not name.isprintable():
        raise _invalid(f"{where}: at most {MAX_SESSION_CHARS} printable characters")
    return name


def parse_chat_request(body: Any, session_header: str | None = None) -> ChatRequest:
    """Validate a chat-completions body (ApiError ``invalid_request`` if it is not one)."""
    if not isinstance(body, Mapping):
        raise _invalid("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("model: must be a non-empty string")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages: must be a non-empty list")
    messages = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise _invalid(f"{where}: must be an object")
        role = message.get("role")
        if role not in ROLES:
            raise _invalid(f"{where}.role: must be one of {', '.join(ROLES)}, got {role!r}")
        messages.append((ROLES[role], _content(message.get("content"), where)))
    if messages[-1][0] != "user":
        raise _invalid("messages: the last message must be the user's")
    if not messages[-1][1].strip():
        raise _invalid(f"messages[{len(messages) - 1}].content: must not be empty")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream: must be true or false")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise _invalid("stream_options: must be an object")
    n = body.get("n", 1)
    if n not in (1, None):
        raise _invalid("n: only 1 choice is supported")
    user = _session_name(body.get("user"), "user")
    session = _session_name(session_header, SESSION_HEADER) or user
    return ChatRequest(
        model=model.strip(),
        messages=tuple(messages),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        session=session,
        user=user,
    )


# --- models --------------------------------------------------------------------------


def _model(model_id: str, created: int, **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "salon", **extra}


def models_of(ctx: ApiContext, created: int) -> list[dict[str, Any]]:
    """Every hosted agent and team, then ``auto``."""
    models = [
        _model(m.agent_id, created, kind=m.kind, label=m.label, description=m.description)
        for m in ctx.roster.hosted()
    ]
    auto = "the routing chain picks the agent (X-Salon-Route says why)"
    models.append(_model(AUTO, created, kind="router", label="Auto", description=auto))
    return models


def _unknown_model(ctx: ApiContext, model: str) -> ApiError:
    known = ", ".join([*(m.agent_id for m in ctx.roster.hosted()), AUTO])
    return ApiError("model_not_found", model=model, known=known)


# --- choosing the agent and building the turn -------------------------------------------


class _Refusal(Exception):
    """An error answer that carries its own headers."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def _header_value(text: str) -> str:
    """``text`` as a safe one-line ASCII header value."""
    flat = " ".join(text.split())
    return flat.encode("ascii", "backslashreplace").decode("ascii")[:500]


async def choose_agent(
    ctx: ApiContext, chat: ChatRequest, sender: str
) -> tuple[AgentId, dict[str, str]]:
    """The agent that answers, and the headers that say so."""
    hosted = {m.agent_id for m in ctx.roster.hosted()}
    if chat.model != AUTO:
        if chat.model not in hosted or chat.model not in ctx.runner.agents:
            raise _unknown_model(ctx, chat.model)
        return AgentId(chat.model), {AGENT_HEADER: chat.model}
    decision = await ctx.router.route(
        MessageContext(
            room_id="",
            sender=sender,
            body=chat.text,
            agents_in_room=frozenset(str(a) for a in hosted),
        )
    )
    reason = decision.reason.value + (f": {decision.detail}" if decision.detail else "")
    headers = {ROUTE_HEADER: _header_value(reason)}
    chosen = next((a for a in decision.agents if a in ctx.runner.agents), None)
    if chosen is None:
        raise _Refusal(error_response("no_route", headers, reason=reason))
    return AgentId(chosen), {**headers, AGENT_HEADER: chosen}


def turn_spec(agent_id: AgentId, chat: ChatRequest, sender: str) -> TurnSpec:
    """The API turn answering ``chat``."""
    common: dict[str, Any] = {
        "turn_id": f"api:{uuid.uuid4().hex}",
        "agent_id": agent_id,
        "kind": TurnKind.API,
        "room_id": RoomId(""),
        "sender": sender,
        "text": chat.text,
    }
    if chat.session is not None:
        return TurnSpec(**common, session_key=f"agent:{agent_id}:api:{chat.session}")
    return TurnSpec(
        **common,
        session_key=f"agent:{agent_id}:api:stateless",
        stateless=True,
        history=chat.history,
    )


# --- answers ------------------------------------------------------------------------------


def error_response(
    code: str, headers: Mapping[str, str] | None = None, **values: Any
) -> web.Response:
    """An OpenAI-style error answer for catalogue ``code``, with ``headers``."""
    status, message = api_error(code, **values)
    return web.json_response(error_body(code, message), status=status, headers=headers)


def failure_of(ctx: ApiContext, spec: TurnSpec, outcome: Outcome) -> tuple[str, dict[str, Any]]:
    """The catalogue code (and its values) of a failed turn."""
    if outcome.error == "deadline":
        return "timeout", {"seconds": math.ceil(ctx.runner.policy.deadline_s)}
    member = ctx.roster.get(spec.agent_id)
    label = member.label if member is not None else spec.agent_id
    return "backend_error", {"agent": label, "error": outcome.error or outcome.notice or "failed"}


def _usage(chat: ChatRequest, spec: TurnSpec, text: str) -> dict[str, int]:
    sent = chat.messages if spec.stateless else chat.messages[-1:]
    prompt = sum(estimate_tokens(content) for _, content in sent)
    completion = estimate_tokens(text) if text else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion_id(spec: TurnSpec) -> str:
    return "chatcmpl-" + spec.turn_id.removeprefix("api:")


def completion_body(
    chat: ChatRequest, spec: TurnSpec, outcome: Outcome, created: int
) -> dict[str, Any]:
    """A ``chat.completion`` object for a turn that ended with an answer."""
    return {
        "id": _completion_id(spec),
        "object": "chat.completion",
        "created": created,
        "model": spec.agent_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(chat, spec, outcome.text),
        "system_fingerprint": None,
    }


def _forget_unless_done(runner: TurnRunner, spec: TurnSpec, watcher: TurnWatcher) -> None:
    if not watcher.done.done():
        # The caller went away: the turn still finishes and is ledgered, unread.
        runner.watchers.forget(spec.key)


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _wait_outcome(request: web.Request, watcher: TurnWatcher) -> Outcome | None:
    """The turn's outcome, or None if the caller disconnected first."""
    while True:
        done, _ = await asyncio.wait({watcher.done}, timeout=DISCONNECT_POLL_S)
        if done:
            return watcher.done.result()
        if _gone(request):
            return None


async def _complete(
    request: web.Request,
    ctx: ApiContext,
    chat: ChatRequest,
    spec: TurnSpec,
    headers: dict[str, str],
) -> web.StreamResponse:
    watcher = ctx.runner.watchers.watch(spec.key)
    try:
        await ctx.runner.submit(spec)
        outcome = await _wait_outcome(request, watcher)
    finally:
        _forget_unless_done(ctx.runner, spec, watcher)
    if outcome is None:
        return web.Response(status=499)  # nobody reads it (nginx's "client closed request")
    created = int(time.time())
    if outcome.state is OutcomeState.FAILED:
        code, values = failure_of(ctx, spec, outcome)
        return error_response(code, {**headers, "x-should-retry": "false"}, **values)
    return web.json_response(completion_body(chat, spec, outcome, created), headers=headers)


class _Events:
    """The SSE side of one streamed completion."""

    def __init__(
        self, request: web.Request, chat: ChatRequest, spec: TurnSpec, headers: dict[str, str]
    ) -> None:
        self.request = request
        self.chat = chat
        self.spec = spec
        self.created = int(time.time())
        self.response = web.StreamResponse(
            headers={
                **headers,
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
            await self.response.prepare(self.request)
            await self.chunk({"role": "assistant", "content": ""})

    async def send(self, data: Mapping[str, Any] | str) -> None:
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        await self.response.write(f"data: {payload}\n\n".encode())

    async def comment(self, text: str) -> None:
        await self.response.write(f": {text}\n\n".encode())

    async def chunk(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> None:
        await self.send(
            {
                "id": _completion_id(self.spec),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.spec.agent_id,
                "choices": [
                    {
                        "index": 0,
                        "delta": dict(delta),
                        "finish_reason": finish_reason,
                        "logprobs": None,
                    }
                ],
                "system_fingerprint": None,
            }
        )

    async def finish(self, text: str) -> None:
        await self.chunk({}, finish_reason="stop")
        if self.chat.include_usage:
            await self.send(
                {
                    "id": _completion_id(self.spec),
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.spec.agent_id,
                    "choices": [],
                    "usage": _usage(self.chat, self.spec, text),
                }
            )
        await self.send("[DONE]")


async def _stream(
    request: web.Request,
    ctx: ApiContext,
    chat: ChatRequest,
    spec: TurnSpec,
    headers: dict[str, str],
) -> web.StreamResponse:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    watcher = ctx.runner.watchers.watch(spec.key, on_chunk=queue.put_nowait)
    events = _Events(request, chat, spec, headers)
    try:
        await ctx.runner.submit(spec)
        watcher.done.add_done_callback(lambda _: queue.put_nowait(None))
        sent: list[str] = []
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await events.start()  # a slow first chunk: the caller sees the stream begin
                await events.comment("keep-alive")
                continue
            if item is None:
                break
            await events.start()
            sent.append(item)
            await events.chunk({"content": item})
        outcome = watcher.done.result()
        shown = "".join(sent)
        if outcome.state is OutcomeState.FAILED:
            code, values = failure_of(ctx, spec, outcome)
            if not events.started:
                # Nothing was sent yet: a plain error answer, with its status code.
                return error_response(code, {**headers, "x-should-retry": "false"}, **values)
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
        pass  # the caller went away (the turn goes on, unread)
    finally:
        _forget_unless_done(ctx.runner, spec, watcher)
    return events.response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``."""
    ctx = request.app[CONTEXT]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _invalid("the body must be JSON") from None
    chat = parse_chat_request(body, request.headers.get(SESSION_HEADER))
    sender = f"api:{chat.user or 'client'}"
    try:
        agent_id, headers = await choose_agent(ctx, chat, sender)
    except _Refusal as refusal:
        return refusal.response
    spec = turn_spec(agent_id, chat, sender)
    headers[TURN_HEADER] = spec.turn_id
    if chat.stream:
        return await _stream(request, ctx, chat, spec, headers)
    return await _complete(request, ctx, chat, spec, headers)


def add_routes(app: web.Application) -> None:
    """Add this module's routes to ``app``."""
    created = int(time.time())

    async def list_models(request: web.Request) -> web.Response:
        """``GET /v1/models``."""
        return web.json_response(
            {"object": "list", "data": models_of(request.app[CONTEXT], created)}
        )

    async def get_model(request: web.Request) -> web.Response:
        """``GET /v1/models/{model}``."""
        ctx = request.app[CONTEXT]
        model = request.match_info["model"]
        for entry in models_of(ctx, created):
            if entry["id"] == model:
                return web.json_response(entry)
        raise _unknown_model(ctx, model)

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
