"""Choosing the agent for a chat request, building its API turn, and what both
answers (:mod:`salon.api.openai_completion`, :mod:`salon.api.openai_stream`) share.

``model: auto`` lets the routing chain pick the agent; the decision is in the
``X-Salon-Route`` (``<reason>: <detail>``) and ``X-Salon-Agent`` headers.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from salon.agents.history import estimate_tokens
from salon.api.context import ApiContext
from salon.api.openai_models import AUTO, unknown_model
from salon.api.openai_request import ChatRequest
from salon.api.server import json_error
from salon.ids import AgentId, RoomId
from salon.routing.context import MessageContext
from salon.turns.spec import Outcome, TurnKind, TurnSpec
from salon.turns.watchers import TurnWatcher

ROUTE_HEADER = "X-Salon-Route"
AGENT_HEADER = "X-Salon-Agent"
TURN_HEADER = "X-Salon-Turn"
# Who every API call counts as for the per-sender turn limits: the token's holder
# (one token, one caller), never the client-chosen ``user``, which is only a label.
API_CALLER = "api"


# --- choosing the agent and building the turn -------------------------------------------


class Refusal(Exception):
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
            raise unknown_model(ctx, chat.model)
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
        raise Refusal(json_error("no_route", headers, reason=reason))
    return AgentId(chosen), {**headers, AGENT_HEADER: chosen}


def turn_spec(agent_id: AgentId, chat: ChatRequest, sender: str) -> TurnSpec:
    """The API turn answering ``chat``."""
    common: dict[str, Any] = {
        "turn_id": f"api:{uuid.uuid4().hex}",
        "agent_id": agent_id,
        "kind": TurnKind.API,
        "room_id": RoomId(""),
        "sender": sender,
        "slot_sender": API_CALLER,
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


# --- one call being answered ------------------------------------------------------------


def caller_gone(request: web.Request) -> bool:
    """Whether the caller closed its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


@dataclass(frozen=True)
class ChatTurn:
    """One chat-completions call being answered: the caller's request, the turn, its headers."""

    request: web.Request
    ctx: ApiContext
    chat: ChatRequest
    spec: TurnSpec
    headers: dict[str, str]

    @property
    def completion_id(self) -> str:
        """The answer's ``id``: the turn's, OpenAI-style."""
        return "chatcmpl-" + self.spec.turn_id.removeprefix("api:")

    def usage(self, text: str) -> dict[str, int]:
        """Estimated token counts of what the turn was sent and of its answer ``text``."""
        sent = self.chat.messages if self.spec.stateless else self.chat.messages[-1:]
        prompt = sum(estimate_tokens(content) for _, content in sent)
        completion = estimate_tokens(text) if text else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def failure(self, outcome: Outcome) -> tuple[str, dict[str, Any]]:
        """The catalogue code (and its values) of a failed turn."""
        if outcome.error == "deadline":
            return "timeout", {"seconds": math.ceil(self.ctx.runner.policy.deadline_s)}
        member = self.ctx.roster.get(self.spec.agent_id)
        label = member.label if member is not None else self.spec.agent_id
        return "backend_error", {
            "agent": label,
            "error": outcome.error or outcome.notice or "failed",
        }

    def failure_response(self, outcome: Outcome) -> web.Response:
        """The OpenAI-style error answer of a failed turn (not to retry: it already ran)."""
        code, values = self.failure(outcome)
        return json_error(code, {**self.headers, "x-should-retry": "false"}, **values)

    def let_go(self, watcher: TurnWatcher) -> None:
        """Stop watching the turn, and stop the turn itself, unless it is done."""
        if not watcher.done.done():
            # The caller went away before the end: nobody will read the answer, so the
            # turn is stopped (its ledger row ends `stopped`) instead of running on.
            self.ctx.runner.watchers.forget(self.spec.key)
            self.ctx.runner.stop_turn(self.spec.key)
