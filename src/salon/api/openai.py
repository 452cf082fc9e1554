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

The parts: request parsing (:mod:`salon.api.openai_request`), the models
(:mod:`salon.api.openai_models`), choosing the agent and building the turn
(:mod:`salon.api.openai_turn`), the non-streaming answer
(:mod:`salon.api.openai_completion`) and the streamed one (:mod:`salon.api.openai_stream`).
"""

from __future__ import annotations

import time

from aiohttp import web

from salon.api.bodies import read_json
from salon.api.openai_completion import complete
from salon.api.openai_models import models_of, unknown_model
from salon.api.openai_request import SESSION_HEADER, parse_chat_request
from salon.api.openai_stream import stream
from salon.api.openai_turn import TURN_HEADER, ChatTurn, Refusal, choose_agent, turn_spec
from salon.api.server import CONTEXT

# A stream with nothing to say for this long sends an SSE comment (proxies, idle timeouts).
KEEPALIVE_S = 15.0
# How often a request checks whether its caller is still there (a gone one stops the turn).
DISCONNECT_POLL_S = 1.0


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``."""
    ctx = request.app[CONTEXT]
    body = await read_json(request)
    chat = parse_chat_request(body, request.headers.get(SESSION_HEADER))
    sender = f"api:{chat.user or 'client'}"
    try:
        agent_id, headers = await choose_agent(ctx, chat, sender)
    except Refusal as refusal:
        return refusal.response
    spec = turn_spec(agent_id, chat, sender)
    headers[TURN_HEADER] = spec.turn_id
    turn = ChatTurn(request, ctx, chat, spec, headers)
    # The timings are read here, at call time, so that a test may change them.
    if chat.stream:
        return await stream(turn, KEEPALIVE_S, DISCONNECT_POLL_S)
    return await complete(turn, DISCONNECT_POLL_S)


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
        raise unknown_model(ctx, model)

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
