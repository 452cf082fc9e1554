"""Routes: each agent as an A2A (Agent2Agent) agent, at ``/a2a/<agent>``.

- ``GET /a2a/<agent>/.well-known/agent-card.json``: its agent card (one skill, from
  its label and description; JSON-RPC at the base URL, protocol 1.0 and 0.3).
- ``POST /a2a/<agent>``: JSON-RPC ``SendMessage`` / ``message/send`` (one agent
  ``Message``) and ``SendStreamingMessage`` / ``message/stream`` (server-sent events:
  a working ``Task``, the text as artifact chunks, a final status).

A call is one ledgered API turn of that agent in the one turn runner (the turn
the OpenAI-compatible endpoint builds, :func:`salon.api.openai_turn.turn_spec`),
with the same slots, deadline and delegation; its ``contextId`` is a durable
session (``agent:<id>:api:a2a-<contextId>``). The card and the calls need the
API's bearer token like every other route (the card says so): an agent's card
names what it does, which a deployment may not want public. Off unless
configured: ``api.a2a: true`` or an agent's ``a2a: true``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web

from salon import __version__
from salon.api import a2a_wire as wire
from salon.api.context import ApiContext
from salon.api.openai_request import ChatRequest
from salon.api.openai_turn import AGENT_HEADER, TURN_HEADER, ChatTurn, caller_gone, turn_spec
from salon.api.server import CONTEXT, json_error
from salon.ids import AgentId
from salon.responses import api_error
from salon.turns.spec import Outcome, OutcomeState

CARD_PATH = "/.well-known/agent-card.json"
SENDER = "a2a:client"
# How often a waiting call checks whether its caller is still there.
POLL_S = 1.0
# A stream with nothing to say for this long sends an SSE comment (proxies, idle timeouts).
KEEPALIVE_S = 15.0


def _served(ctx: ApiContext, agent_id: str) -> bool:
    member = ctx.roster.get(agent_id)
    served = ctx.a2a_served is not None and ctx.a2a_served(agent_id)
    return member is not None and member.hosted and agent_id in ctx.runner.agents and served


def agent_card(ctx: ApiContext, agent_id: str, base_url: str) -> dict[str, Any]:
    """The agent card of ``agent_id`` served at ``base_url``."""
    member = ctx.roster.get(agent_id)
    label = member.label if member is not None else agent_id
    description = (member.description if member is not None else "") or f"{label}, a Salon agent"
    interfaces = [
        {"url": base_url, "protocolBinding": "JSONRPC", "protocolVersion": version}
        for version in ("1.0", "0.3")
    ]
    return {
        "name": label,
        "description": description,
        "version": __version__,
        "supportedInterfaces": interfaces,
        # 0.3 clients read these three instead of supportedInterfaces.
        "url": base_url,
        "preferredTransport": "JSONRPC",
        "protocolVersion": "0.3.0",
        "capabilities": {"streaming": True},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": agent_id, "name": label, "description": description, "tags": ["salon"]}],
        "securitySchemes": {"bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer"}}},
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
    }


def _failure(turn: ChatTurn, outcome: Outcome) -> tuple[str, str]:
    code, values = turn.failure(outcome)
    return code, api_error(code, **values)[1]


async def _answer(turn: ChatTurn, ask: wire.Ask, rpc_id: Any) -> web.StreamResponse:
    """``SendMessage``: run the turn, answer with its text as one agent message."""
    runner = turn.ctx.runner
    watcher = runner.watchers.watch(turn.spec.key)
    try:
        await runner.submit(turn.spec)
        while not watcher.done.done():
            await asyncio.wait({watcher.done}, timeout=POLL_S)
            if not watcher.done.done() and caller_gone(turn.request):
                return web.Response(status=499)  # `let_go` stops the turn
        outcome = watcher.done.result()
    finally:
        turn.let_go(watcher)
    if outcome.state is OutcomeState.FAILED:
        code, message = _failure(turn, outcome)
        body = wire.error(rpc_id, wire.INTERNAL_ERROR, message, code)
    else:
        body = wire.result(rpc_id, wire.agent_message(ask, outcome.text, turn.spec.turn_id))
    return web.json_response(body, headers=turn.headers)


async def _stream(turn: ChatTurn, ask: wire.Ask, rpc_id: Any) -> web.StreamResponse:
    """``SendStreamingMessage``: the turn as a task whose answer arrives in chunks."""
    runner = turn.ctx.runner
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    watcher = runner.watchers.watch(turn.spec.key, on_chunk=queue.put_nowait)
    response = web.StreamResponse(
        headers={**turn.headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    task_id, artifact_id = turn.spec.turn_id.removeprefix("api:"), uuid.uuid4().hex

    async def send(event: dict[str, Any]) -> None:
        payload = json.dumps(wire.result(rpc_id, event), ensure_ascii=False)
        await response.write(f"data: {payload}\n\n".encode())

    try:
        await runner.submit(turn.spec)
        watcher.done.add_done_callback(lambda _: queue.put_nowait(None))
        await response.prepare(turn.request)
        await send(wire.task_event(ask, task_id))
        sent: list[str] = []
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), POLL_S)
            except TimeoutError:
                if caller_gone(turn.request):
                    return response
                if loop.time() - last_sent >= KEEPALIVE_S:
                    await response.write(b": keep-alive\n\n")
                    last_sent = loop.time()
                continue
            last_sent = loop.time()
            if item is None:
                break
            await send(wire.chunk_event(ask, task_id, artifact_id, item, not sent))
            sent.append(item)
        outcome = watcher.done.result()
        if outcome.state is OutcomeState.FAILED:
            await send(wire.status_event(ask, task_id, "failed", _failure(turn, outcome)[1]))
        else:
            shown = "".join(sent)
            rest = outcome.text[len(shown) :] if outcome.text.startswith(shown) else ""
            if rest or not sent:  # what the runner added, or an answer sent in one piece
                await send(wire.chunk_event(ask, task_id, artifact_id, rest, not sent))
            await send(wire.status_event(ask, task_id, "completed"))
        await response.write_eof()
    except ConnectionError:
        pass  # the caller went away: `let_go` stops the turn
    finally:
        turn.let_go(watcher)
    return response


async def call(request: web.Request) -> web.StreamResponse:
    """``POST /a2a/<agent>``: one JSON-RPC call."""
    ctx = request.app[CONTEXT]
    agent_id = request.match_info["agent_id"]
    if not _served(ctx, agent_id):
        return json_error("not_found", path=request.path)
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return web.json_response(wire.error(None, wire.PARSE_ERROR, "the body is not JSON"))
    try:
        rpc_id, ask = wire.parse_call(body)
    except wire.WireError as e:
        rpc_id = body.get("id") if isinstance(body, dict) else None
        return web.json_response(wire.error(rpc_id, e.code, e.message))
    chat = ChatRequest(
        model=agent_id, messages=(("user", ask.text),), session=f"a2a-{ask.context_id}"
    )
    spec = turn_spec(AgentId(agent_id), chat, SENDER)
    headers = {AGENT_HEADER: agent_id, TURN_HEADER: spec.turn_id}
    turn = ChatTurn(request, ctx, chat, spec, headers)
    return await (_stream if ask.streamed else _answer)(turn, ask, rpc_id)


async def card(request: web.Request) -> web.Response:
    """``GET /a2a/<agent>/.well-known/agent-card.json``."""
    ctx = request.app[CONTEXT]
    agent_id = request.match_info["agent_id"]
    if not _served(ctx, agent_id):
        return json_error("not_found", path=request.path)
    base_url = f"{request.scheme}://{request.host}/a2a/{agent_id}"
    return web.json_response(agent_card(ctx, agent_id, base_url))


def add_routes(app: web.Application) -> None:
    """Add this module's routes to ``app``."""
    app.router.add_get("/a2a/{agent_id}" + CARD_PATH, card)
    app.router.add_post("/a2a/{agent_id}", call)
