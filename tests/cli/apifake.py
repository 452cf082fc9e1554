"""A stand-in for the gateway's HTTP API: canned answers on a real loopback port.

It runs in its own thread with its own event loop (the CLI code under test calls
``asyncio.run`` itself) and records every request it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Seen:
    """One request the fake got."""

    method: str
    path: str
    query: dict[str, str]
    auth: str | None
    body: Any


@dataclass
class FakeApi:
    """Answers ``(method, path)`` with ``answers[...] = (status, json)``; 404 otherwise."""

    url: str = ""
    token: str | None = "fake-token"
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)

    def api_calls(self) -> list[Seen]:
        """The requests other than the ``/healthz`` probes."""
        return [r for r in self.requests if r.path != "/healthz"]

    async def handle(self, request: web.Request) -> web.Response:
        body = None
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
        auth = request.headers.get("Authorization")
        self.requests.append(Seen(request.method, request.path, dict(request.query), auth, body))
        if request.path == "/healthz":
            return web.json_response({"ok": True})
        if self.token is not None and auth != f"Bearer {self.token}":
            return web.json_response(error("unauthorized", UNAUTHORIZED), status=401)
        status, answer = self.answers.get(
            (request.method, request.path),
            (404, error("not_found", f"no such route: {request.path}")),
        )
        return web.json_response(answer, status=status)


UNAUTHORIZED = "a valid 'Authorization: Bearer <token>' header is required"


def error(code: str, message: str) -> dict[str, Any]:
    """An error body as the API writes it."""
    return {"error": {"code": code, "message": message, "type": code}}


@contextlib.contextmanager
def running_fake() -> Iterator[FakeApi]:
    """A FakeApi listening on a free loopback port for the block."""
    fake = FakeApi()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner_box: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        fake.url = f"http://127.0.0.1:{port}"
        runner_box.append(runner)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner_box[0].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10), "the fake API did not start"
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
