"""The LLM router: an OpenAI-compatible model picks the agent for a message.

Used when ``router.model`` is set and more than one agent could answer. The
model sees the candidates (id, label, description) and the message, and answers
``{"agent": "<id>", "reason": "<one line>"}``. The request asks for JSON mode
(``response_format={"type": "json_object"}``); a server that rejects that with
HTTP 400 is asked again without it (and from then on), and a JSON object
embedded in prose is accepted too. Anything else, an unknown agent, an error
or the time limit (``router.timeout_s``, for the whole decision), gives
``None``: the caller falls back to the lexical scorer. Nothing here raises.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai
import structlog

from salon.config.models import RouterConfig
from salon.routing.context import AgentInfo, MessageContext

__all__ = ["AIChoice", "AIRouter", "parse_answer"]

# Local servers ignore the key, but the client insists on one.
PLACEHOLDER_API_KEY = "not-needed"
MAX_MESSAGE_CHARS = 4000
MAX_DESCRIPTION_CHARS = 400
MAX_REASON_CHARS = 200

SYSTEM_PROMPT = """\
You route chat messages to the AI agent best suited to answer them.
The agents (JSON): {agents}
Choose exactly one agent for the user's message, even if none fits well.
Answer with only a JSON object: {{"agent": "<agent id>", "reason": "<one short line>"}}"""


@dataclass(frozen=True)
class AIChoice:
    """The agent the model picked and its one-line reason."""

    agent_id: str
    reason: str


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_objects(text: str) -> list[Any]:
    """The whole text as JSON, else every JSON object embedded in it, in order."""
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    found: list[Any] = []
    start = text.find("{")
    while start != -1 and len(found) < 10:
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        found.append(obj)
        start = text.find("{", end)
    return found


def parse_answer(text: str | None, candidates: Sequence[AgentInfo]) -> AIChoice | None:
    """The choice in a model's answer, if it names one of ``candidates``."""
    by_id = {a.agent_id: a.agent_id for a in candidates}
    by_name = {name.lower(): a.agent_id for a in candidates for name in (a.agent_id, a.label)}
    for obj in _json_objects(text or ""):
        if not isinstance(obj, dict) or not isinstance(obj.get("agent"), str):
            continue
        name = obj["agent"].strip()
        agent_id = by_id.get(name) or by_name.get(name.lower().lstrip("@"))
        if agent_id is None:
            continue
        reason = obj.get("reason")
        return AIChoice(
            agent_id, _one_line(reason if isinstance(reason, str) else "", MAX_REASON_CHARS)
        )
    return None


class AIRouter:
    """Asks an OpenAI-compatible chat-completions endpoint which agent should answer.

    ``env`` (default ``os.environ``) is where ``api_key_env`` is looked up; when it
    is unset a placeholder key is sent, which keyless local servers accept.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key_env: str | None = None,
        timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        env = os.environ if env is None else env
        key = env.get(api_key_env) if api_key_env else None
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=key or PLACEHOLDER_API_KEY, timeout=timeout_s, max_retries=0
        )
        self._json_mode = True
        self.log = structlog.get_logger("salon.routing.ai")

    @classmethod
    def from_config(cls, config: RouterConfig, *, env: Mapping[str, str] | None = None) -> AIRouter:
        """The AI router ``router:`` describes; ValueError if ``model`` is not set."""
        if not config.model or not config.base_url:
            raise ValueError("router.model and router.base_url are required for the AI router")
        return cls(
            model=config.model,
            base_url=config.base_url,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            env=env,
        )

    async def aclose(self) -> None:
        """Close the client's HTTP connections."""
        await self._client.close()

    def messages(
        self, ctx: MessageContext, candidates: Sequence[AgentInfo]
    ) -> list[dict[str, str]]:
        """The chat messages sent to the model for ``ctx``."""
        agents = [
            {
                "id": a.agent_id,
                "label": a.label,
                "description": _one_line(a.description, MAX_DESCRIPTION_CHARS),
            }
            for a in candidates
        ]
        system = SYSTEM_PROMPT.format(agents=json.dumps(agents, ensure_ascii=False))
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": ctx.body[:MAX_MESSAGE_CHARS]},
        ]

    async def choose(self, ctx: MessageContext, candidates: Sequence[AgentInfo]) -> AIChoice | None:
        """The model's pick among ``candidates`` for ``ctx``, or None (warning logged)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                text = await self._ask(self.messages(ctx, candidates))
        except TimeoutError:
            self._warn(f"no answer within {self.timeout_s:g} s")
            return None
        except openai.APIStatusError as exc:
            self._warn(f"HTTP {exc.status_code}: {_one_line(exc.message, 200)}")
            return None
        except openai.APIConnectionError as exc:
            self._warn(f"cannot reach {self.base_url}: {type(exc).__name__}")
            return None
        except Exception as exc:  # malformed replies and the like
            self._warn(f"{type(exc).__name__}: {_one_line(str(exc), 200)}")
            return None
        choice = parse_answer(text, candidates)
        if choice is None:
            self._warn(f"no known agent in the answer {_one_line(text or '', 200)!r}")
        return choice

    async def _ask(self, messages: list[dict[str, str]]) -> str | None:
        params: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
        if not self._json_mode:
            return await self._complete(params)
        try:
            return await self._complete({**params, "response_format": {"type": "json_object"}})
        except openai.BadRequestError:
            # Some servers do not know JSON mode: if they answer without it, stop asking.
            text = await self._complete(params)
            self._json_mode = False
            return text

    async def _complete(self, params: dict[str, Any]) -> str | None:
        reply = await self._client.chat.completions.create(**params, stream=False)
        return reply.choices[0].message.content if reply.choices else None

    def _warn(self, problem: str) -> None:
        self.log.warning("routing.ai_fallback", model=self.model, problem=problem)
