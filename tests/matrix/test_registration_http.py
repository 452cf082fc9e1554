"""Registration and login share the one HTTP stack: its 429 policy and its error map.

Against a small homeserver stand-in on loopback, for the answers a real Synapse
does not give on demand (a 429 from a proxy, a body that is not JSON).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tests.agents.fakes import serve

from salon._exceptions import (
    ForbiddenError,
    MatrixResponseError,
    RateLimitedError,
    UnknownTokenError,
)
from salon.matrix.ratelimit import RetryPolicy
from salon.matrix.registration import login_with_password, register_with_shared_secret
from salon.metrics import RATE_LIMIT_WAITS

FAST = RetryPolicy(max_retries=2, default_wait_s=0.01)
CREDS = {"user_id": "@bot:localhost", "access_token": "tok", "device_id": "DEV"}


@dataclass
class FakeHomeserver:
    """Answers each endpoint from a queue of (status, body); the last one repeats."""

    answers: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    seen: list[tuple[str, str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.seen.append((request.method, request.path, raw))
        queue = self.answers[f"{request.method} {request.path}"]
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html")
        return web.json_response(body, status=status)


@pytest.fixture
async def hs() -> AsyncIterator[tuple[FakeHomeserver, str, aiohttp.ClientSession]]:
    server = FakeHomeserver()
    async with serve(server.app()) as url, aiohttp.ClientSession() as session:
        yield server, url, session


REGISTER = "/_synapse/admin/v1/register"
LOGIN = "/_matrix/client/v3/login"
LIMITED = (429, {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many", "retry_after_ms": 10})


async def test_a_429_on_register_is_waited_out_by_the_shared_policy(hs: Any) -> None:
    server, url, session = hs
    server.answers = {
        f"GET {REGISTER}": [(200, {"nonce": "n1"})],
        f"POST {REGISTER}": [LIMITED, (200, CREDS)],
    }
    waits_before = RATE_LIMIT_WAITS._value.get()
    creds = await register_with_shared_secret(session, url, "s", "bot", "pw", policy=FAST)
    assert (creds.user_id, creds.device_id) == ("@bot:localhost", "DEV")
    assert RATE_LIMIT_WAITS._value.get() == waits_before + 1  # the shared layer waited
    assert [(m, p) for m, p, _ in server.seen] == [
        ("GET", REGISTER),
        ("POST", REGISTER),
        ("POST", REGISTER),
    ]


async def test_login_gives_up_after_the_policy_bound(hs: Any) -> None:
    server, url, session = hs
    server.answers = {f"POST {LOGIN}": [LIMITED]}
    with pytest.raises(RateLimitedError) as info:
        await login_with_password(session, url, "@bot:localhost", "pw", policy=FAST)
    assert info.value.retry_after_s == 0.01
    assert len(server.seen) == FAST.max_retries + 1


async def test_login_sends_the_device_id(hs: Any) -> None:
    server, url, session = hs
    server.answers = {f"POST {LOGIN}": [(200, CREDS)]}
    await login_with_password(session, url, "@bot:localhost", "pw", device_id="DEV")
    assert b'"device_id": "DEV"' in server.seen[0][2]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((200, "<html>proxy page</html>"), MatrixResponseError),
        ((200, {"user_id": "@bot:localhost", "access_token": "t"}), MatrixResponseError),
        ((403, "<html>Forbidden</html>"), ForbiddenError),
        ((401, {"errcode": "M_UNKNOWN_TOKEN", "error": "no"}), UnknownTokenError),
    ],
)
async def test_bad_answers_map_through_the_one_table(
    hs: Any, answer: tuple[int, Any], expected: type[Exception]
) -> None:
    server, url, session = hs
    server.answers = {f"POST {LOGIN}": [answer]}
    with pytest.raises(expected):
        await login_with_password(session, url, "@bot:localhost", "pw", policy=FAST)


async def test_register_without_a_nonce_is_a_response_error(hs: Any) -> None:
    server, url, session = hs
    server.answers = {f"GET {REGISTER}": [(200, {})]}
    with pytest.raises(MatrixResponseError, match="nonce"):
        await register_with_shared_secret(session, url, "s", "bot", "pw")
