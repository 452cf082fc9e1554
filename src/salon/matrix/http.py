"""mautrix's HTTP layer with a 429 policy wrapped around it.

Every request Salon makes to a homeserver goes through :class:`RateLimitedHTTPAPI`:
the per-identity :class:`~salon.matrix.api.MatrixAPI` and the token-less
registration and login calls alike. It raises mautrix's errors (and
:class:`~salon._exceptions.RateLimitedError`); callers map them with
:func:`salon.matrix.errors.mapped`.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

import structlog
from aiohttp import ClientResponse, ClientTimeout, ContentTypeError
from mautrix.api import HTTPAPI, Method
from mautrix.errors import MatrixResponseError, MLimitExceeded, make_request_error
from yarl import URL

from salon._exceptions import RateLimitedError
from salon.matrix.ratelimit import RetryPolicy, parse_retry_after, retry_delay
from salon.metrics import RATE_LIMIT_WAITS

log = structlog.get_logger("salon.matrix.http")

# A per-request override of the instance's timeout (a /sync long-poll outlasts the
# usual bound); mautrix's request() has no way to pass it down to _send().
_TIMEOUT: ContextVar[ClientTimeout | None] = ContextVar("salon_request_timeout", default=None)


class _LimitExceeded(MLimitExceeded):
    """MLimitExceeded that keeps the delay the server asked for."""

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(429, message)
        self.retry_after_s = retry_after_s


class RateLimitedHTTPAPI(HTTPAPI):
    """HTTPAPI that waits out 429 responses per a :class:`RetryPolicy`.

    ``timeout`` bounds each request (default: the session's own timeout), and
    ``request(..., timeout=...)`` one request; an empty token makes token-less
    requests (registration, login).
    """

    def __init__(
        self,
        *args: Any,
        policy: RetryPolicy | None = None,
        timeout: ClientTimeout | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy or RetryPolicy()
        self.timeout = timeout

    async def _send(
        self,
        method: Method,
        url: URL,
        content: Any,
        query_params: dict[str, str],
        headers: dict[str, str],
    ) -> tuple[Any, ClientResponse]:
        timeout = _TIMEOUT.get() or self.timeout
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        request = self.session.request(
            str(method), url, data=content, params=query_params, headers=headers, **extra
        )
        async with request as response:
            if 200 <= response.status < 300:
                try:
                    return await response.json(content_type=None), response
                except ValueError as e:
                    # Not a connection problem (mautrix would call it one): a bad answer.
                    raise MatrixResponseError(
                        f"{method} {url.path} answered {response.status} with a body "
                        f"that is not JSON: {e}"
                    ) from e
            try:
                body = await response.json(content_type=None)
            except (ContentTypeError, ValueError):
                body = None
            if response.status == 429:
                delay = parse_retry_after(body, response.headers.get("Retry-After"))
                message = body.get("error", "rate limited") if isinstance(body, dict) else ""
                raise _LimitExceeded(str(message), delay)
            errcode = message = unstable = None
            if isinstance(body, dict):
                errcode, message = body.get("errcode"), body.get("error")
                unstable = body.get("org.matrix.msc3848.unstable.errcode")
            raise make_request_error(
                http_status=response.status,
                text=await response.text(),
                errcode=errcode,
                message=message,
                unstable_errcode=unstable,
            )

    async def request(self, *args: Any, timeout: ClientTimeout | None = None, **kwargs: Any) -> Any:
        """Make a request; on 429 wait as told and retry, up to the policy's bound.
        ``timeout`` bounds each try (429 waits are not counted)."""
        reset = _TIMEOUT.set(timeout)
        try:
            return await self._until_not_limited(*args, **kwargs)
        finally:
            _TIMEOUT.reset(reset)

    async def _until_not_limited(self, *args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            try:
                return await super().request(*args, **kwargs)
            except _LimitExceeded as e:
                attempt += 1
                wait = retry_delay(self.policy, attempt, e.retry_after_s)
                if wait is None:
                    raise RateLimitedError(
                        f"still rate limited after {self.policy.max_retries} retries",
                        retry_after_s=e.retry_after_s,
                    ) from e
                RATE_LIMIT_WAITS.inc()
                log.info("matrix.rate_limited", attempt=attempt, wait_s=round(wait, 3))
                await asyncio.sleep(wait)
