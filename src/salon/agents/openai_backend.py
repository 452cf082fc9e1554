"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint.

One :class:`openai.AsyncOpenAI` client per agent (OpenAI, Ollama, vLLM,
llama.cpp server, LiteLLM, OpenRouter … differ only by ``base_url``). The
client's own retries are off; Salon retries transient failures (connection
refused, timeout, 5xx, 429) with exponential backoff, but only until the first
chunk has been yielded: a reply that has started is never restarted, because
the text already shown would be repeated. Every ``openai`` error is mapped to a
short, readable :class:`BackendError` here, at the boundary.

Tools: when the turn has a :func:`~salon.agents.context.current_delegator`
with at least one target, every request offers the model the ``delegate`` tool,
and next to it the agent's MCP tools (``mcp__<server>__<tool>``, from the turn's
:func:`~salon.agents.context.current_tools`); every call goes through
:meth:`~salon.agents.toolbox.TurnTools.dispatch`.
Tool-call deltas are collected while text deltas stream out as usual; when the
model asks for tools, the calls of that round run concurrently, their outcomes
go back as ``tool`` messages and the next request is made, for at most
``max_tool_rounds`` rounds. At most ``max_tool_calls_per_round`` calls of a
round run; each call beyond that gets an error result instead (rather than
failing the turn: the model can recover by calling again in the next round,
and every call in the assistant message still needs its ``tool`` message).
The retry rule above holds per request: a request is retried only until its
own first text chunk, and a delegation is never run twice because of a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
import structlog

from salon._exceptions import BackendError
from salon.agents.attachments import chat_content
from salon.agents.backend import TurnRequest
from salon.agents.context import current_delegator, current_tools
from salon.agents.errors import BackendRejectedError, BackendUnavailableError
from salon.agents.toolbox import ToolResult, TurnTools
from salon.agents.tools import delegate_tool_schema
from salon.config.models import OpenAIBackend as OpenAIConfig

# Local servers (Ollama, llama.cpp, vLLM) ignore the key, but the client insists on one.
PLACEHOLDER_API_KEY = "not-needed"
# A server's Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER_S = 30.0

_TRANSIENT = (
    openai.APIConnectionError,  # includes APITimeoutError
    openai.InternalServerError,  # any 5xx
    openai.RateLimitError,
)


def _detail(exc: openai.APIError, limit: int = 200) -> str:
    """The server's own words for an error, shortened."""
    body = exc.body
    text: Any = None
    if isinstance(body, Mapping):
        text = body.get("message") or body.get("error") or body.get("detail")
    if not text:
        text = body if isinstance(body, str) and body else exc.message
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(exc: openai.OpenAIError) -> float | None:
    if not isinstance(exc, openai.APIStatusError):
        return None
    try:
        value = float(exc.response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(value, 0.0), MAX_RETRY_AFTER_S)


@dataclass
class _ToolCall:
    """One tool call, assembled from its streamed pieces."""

    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Reply:
    """What one streamed response held besides the text that was yielded."""

    text: list[str] = field(default_factory=list)
    calls: list[_ToolCall] = field(default_factory=list)
    by_index: dict[int, _ToolCall] = field(default_factory=dict)
    finish_reason: str | None = None

    def add_tool_deltas(self, deltas: Sequence[Any]) -> None:
        """Merge ``delta.tool_calls`` pieces: a call's pieces share its ``index``."""
        for delta in deltas:
            index = getattr(delta, "index", None)
            call_id = getattr(delta, "id", None)
            if isinstance(index, int):
                call = self.by_index.get(index)
                if call is None:
                    call = self.by_index[index] = _ToolCall()
                    self.calls.append(call)
            # Servers that leave out the index send each call whole, or its id first.
            elif not self.calls or (call_id and self.calls[-1].id not in ("", call_id)):
                call = _ToolCall()
                self.calls.append(call)
            else:
                call = self.calls[-1]
            if call_id:
                call.id = call_id
            function = getattr(delta, "function", None)
            if function is not None:
                call.name += getattr(function, "name", None) or ""
                call.arguments += getattr(function, "arguments", None) or ""


class OpenAIChatBackend:
    """Streams chat completions from an OpenAI-compatible server.

    ``env`` (default: ``os.environ``) is where ``api_key_env`` is looked up; when
    the variable is unset (or none is named: the config names ``OPENAI_API_KEY``
    by itself only for OpenAI's own URL) a placeholder key is sent, which keyless
    local servers accept. The key is never logged.
    """

    def __init__(
        self,
        config: OpenAIConfig,
        *,
        agent_id: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.agent_id = agent_id
        self.base_url = config.base_url
        env = os.environ if env is None else env
        key = env.get(config.api_key_env) if config.api_key_env else None
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=key or PLACEHOLDER_API_KEY,
            timeout=config.timeout_s,
            max_retries=0,
        )
        self.log = structlog.get_logger("salon.backend.openai").bind(agent=agent_id)

    async def aclose(self) -> None:
        """Close the HTTP connections of the client; the backend is unusable afterwards."""
        await self._client.close()

    def _params(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
        }
        if tools:
            params["tools"] = tools
            params["tool_choice"] = "auto"
        if self.config.temperature is not None:
            params["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            params["max_tokens"] = self.config.max_tokens
        return params

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """Yield the model's reply as it arrives; raise BackendError on failure.

        With a current delegator, tool rounds happen in between: the text of
        every response is yielded, the final answer last.
        """
        turn_tools = current_tools()
        delegator = current_delegator()
        if turn_tools is None:  # outside the turn runner (tests, tools): delegation only
            turn_tools = TurnTools(None, agent_id=self.agent_id, delegator=delegator)
        elif delegator is not None:
            turn_tools.delegator = delegator
        targets = list(delegator.targets()) if delegator is not None else []
        offered = [spec.schema() for spec in turn_tools.specs()]
        if targets:
            offered.insert(0, delegate_tool_schema(targets))
        tools = offered or None
        messages: list[dict[str, Any]] = [
            {"role": m.role, "content": m.content} for m in request.messages()
        ]
        if request.attachments:  # the new message is last: its files go with it
            messages[-1]["content"] = await asyncio.to_thread(
                chat_content, request.text, request.attachments, self.config.images
            )
        rounds = 0
        last_shown = ""  # the last text chunk yielded, to separate the responses' texts
        while True:
            reply = _Reply()
            pieces = self._request(self._params(messages, tools), reply)
            async with contextlib.aclosing(pieces):
                async for text in pieces:
                    if last_shown and len(reply.text) == 1 and not last_shown[-1].isspace():
                        text = "\n\n" + text.lstrip()
                    last_shown = text
                    yield text
            if not tools or not reply.calls:
                return
            if rounds >= self.config.max_tool_rounds:
                raise BackendRejectedError(
                    f"the model at {self.base_url} still called tools after "
                    f"{rounds} rounds (max_tool_rounds is {self.config.max_tool_rounds})"
                )
            rounds += 1
            messages.extend(await self._run_tools(turn_tools, reply, rounds))

    async def _run_tools(
        self, turn_tools: TurnTools, reply: _Reply, round_no: int
    ) -> list[dict[str, Any]]:
        """Run one round's tool calls concurrently; the messages that report them."""
        for i, call in enumerate(reply.calls):
            if not call.id:  # some local servers send no ids; the tool messages need one
                call.id = f"call_{round_no}_{i}"
        cap = self.config.max_tool_calls_per_round
        allowed, refused = reply.calls[:cap], reply.calls[cap:]
        self.log.info(
            "openai backend running tools",
            round=round_no,
            calls=[call.name for call in allowed],
            refused=len(refused),
        )
        # Numbered in the model's order before any runs, so a re-run numbers them alike.
        calls = [turn_tools.call_for(call.name, call.arguments) for call in allowed]
        outcomes: list[ToolResult] = await asyncio.gather(*map(turn_tools.dispatch, calls))
        # Every call still needs its tool message, and the model can retry fewer next round.
        too_many = ToolResult(
            False,
            f"[ERROR] too many tool calls in one round: only the first {cap} ran "
            f"(max_tool_calls_per_round is {cap}); make this call again in a later round",
            "refused",
        )
        outcomes += [too_many] * len(refused)
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(reply.text) or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in reply.calls
            ],
        }
        results = [
            {"role": "tool", "tool_call_id": call.id, "content": outcome.text}
            for call, outcome in zip(reply.calls, outcomes, strict=True)
        ]
        return [assistant, *results]

    async def _request(self, params: dict[str, Any], reply: _Reply) -> AsyncGenerator[str, None]:
        """One streamed request, retried until its first text chunk; text is yielded.

        Tool-call pieces and the finish reason are collected into ``reply``
        (reset on every attempt, so a retried request never doubles a call).
        """
        delay = self.config.retry_backoff_s
        attempt = 0
        while True:
            attempt += 1
            started = False
            reply.text.clear()
            reply.calls.clear()
            reply.by_index.clear()
            reply.finish_reason = None
            try:
                chunks = await self._client.chat.completions.create(**params)
                try:
                    async for chunk in chunks:
                        if not chunk.choices:
                            continue
                        choice = chunk.choices[0]
                        delta = choice.delta
                        if choice.finish_reason:
                            reply.finish_reason = choice.finish_reason
                        if delta is None:
                            continue
                        if delta.tool_calls:
                            reply.add_tool_deltas(delta.tool_calls)
                        text = delta.content
                        if text:
                            started = True
                            reply.text.append(text)
                            yield text
                finally:
                    await chunks.close()
                return
            except openai.OpenAIError as exc:
                retryable = isinstance(exc, _TRANSIENT) and not started
                if not retryable or attempt > self.config.max_retries:
                    raise self._error(exc, started=started, attempts=attempt) from exc
                wait = max(delay, _retry_after(exc) or 0.0)
                self.log.warning(
                    "openai backend retrying",
                    error=type(exc).__name__,
                    attempt=attempt,
                    wait_s=round(wait, 3),
                )
                await asyncio.sleep(wait)
                delay *= 2
            except Exception as exc:  # malformed chunks and the like: still ours to map
                raise BackendError(
                    f"unexpected reply from {self.base_url}: {type(exc).__name__}: {exc}"
                ) from exc

    def _error(self, exc: openai.OpenAIError, *, started: bool, attempts: int) -> BackendError:
        """A short, user-readable error for an ``openai`` exception."""
        url = self.base_url
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        if started:  # never retried: the text shown so far would be repeated
            if isinstance(exc, openai.APITimeoutError):
                reason = f"no data for {self.config.timeout_s:g} s"
            elif isinstance(exc, openai.APIConnectionError):
                reason = "connection lost"
            elif isinstance(exc, openai.APIError):
                reason = _detail(exc)
            else:
                reason = f"{type(exc).__name__}: {exc}"
            return BackendUnavailableError(f"the reply from {url} broke off: {reason}")
        if isinstance(exc, openai.APITimeoutError):
            return BackendUnavailableError(
                f"{url} did not answer within {self.config.timeout_s:g} s{tries}"
            )
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnavailableError(f"cannot reach {url}{tries}")
        if isinstance(exc, openai.AuthenticationError):
            hint = (
                f"check {self.config.api_key_env}"
                if self.config.api_key_env
                else "no API key: name its variable in api_key_env"
            )
            return BackendRejectedError(f"authentication failed at {url} ({hint})", status=401)
        if isinstance(exc, openai.PermissionDeniedError):
            return BackendRejectedError(f"access denied at {url}: {_detail(exc)}", status=403)
        if isinstance(exc, openai.NotFoundError):
            detail = _detail(exc)
            if exc.code == "model_not_found" or "model" in detail.lower():
                msg = f"model {self.config.model!r} not found at {url}"
            else:
                msg = f"{url}/chat/completions not found (is base_url right?): {detail}"
            return BackendRejectedError(msg, status=404)
        if isinstance(exc, openai.RateLimitError):
            return BackendUnavailableError(f"rate limited by {url}{tries}", status=429)
        if isinstance(exc, openai.InternalServerError):
            status = exc.status_code
            return BackendUnavailableError(
                f"{url} failed with HTTP {status}{tries}: {_detail(exc)}", status=status
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            return BackendRejectedError(
                f"{url} rejected the request (HTTP {status}): {_detail(exc)}", status=status
            )
        if isinstance(exc, openai.APIError):
            return BackendRejectedError(f"{url} reported an error: {_detail(exc)}")
        return BackendError(f"{url}: {type(exc).__name__}: {exc}")
