"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint.

One :class:`openai.AsyncOpenAI` client per agent (OpenAI, Ollama, vLLM,
llama.cpp server, LiteLLM, OpenRouter … differ only by ``base_url``). The
client's own retries are off; Salon retries transient failures (connection
refused, timeout, 5xx, 429) with exponential backoff, but only until the first
chunk has been yielded: a reply that has started is never restarted, because
the text already shown would be repeated. Every ``openai`` error is mapped to a
short, readable :class:`BackendError` here, at the boundary.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai
import structlog

from salon._exceptions import BackendError
from salon.agents.backend import TurnRequest
from salon.agents.errors import BackendRejectedError, BackendUnavailableError
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


class OpenAIChatBackend:
    """Streams chat completions from an OpenAI-compatible server.

    ``env`` (default: ``os.environ``) is where ``api_key_env`` is looked up; when
    the variable is unset a placeholder key is sent, which keyless local servers
    accept. The key is never logged.
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

    def _params(self, request: TurnRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.config.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages()],
            "stream": True,
        }
        if self.config.temperature is not None:
            params["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            params["max_tokens"] = self.config.max_tokens
        return params

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """Yield the model's reply as it arrives; raise BackendError on failure."""
        params = self._params(request)
        delay = self.config.retry_backoff_s
        attempt = 0
        while True:
            attempt += 1
            started = False
            try:
                chunks = await self._client.chat.completions.create(**params)
                try:
                    async for chunk in chunks:
                        if not chunk.choices:
                            continue
                        text = chunk.choices[0].delta.content
                        if text:
                            started = True
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
            hint = f"check {self.config.api_key_env}" if self.config.api_key_env else "no API key"
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
