"""Bounded requests and outage waits that end when the homeserver answers again.

Against small stand-ins on loopback: a server that takes the connection and never
answers, and one whose answers can be switched to 502 and back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from tests.agents.fakes import serve
from tests.gateway.helpers import eventually

from salon._exceptions import MatrixConnectionError, NotFoundError, RateLimitedError
from salon.ids import RoomAlias, RoomId, UserId
from salon.matrix.api import MatrixAPI, RequestSettings
from salon.matrix.delivery import Delivery
from salon.matrix.reachability import Reachability
from salon.metrics import OUTAGE_PROBES
from salon.supervisor import Backoff, LoopHandle, Supervisor

ME = UserId("@bot:localhost")


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    """A homeserver that accepts every connection and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_homeserver_that_never_answers_fails_the_call_within_the_bound(
    silent: str,
) -> None:
    async with aiohttp.ClientSession() as session:
        api = MatrixAPI(
            silent, ME, "tok", session=session, requests=RequestSettings(request_timeout_s=0.5)
        )
        started = time.monotonic()
        # wait_for only so that a regression fails here rather than after aiohttp's 300 s.
        with pytest.raises(MatrixConnectionError):
            await asyncio.wait_for(api.whoami(), 10)
        assert time.monotonic() - started < 3
        # A long-poll is allowed its own timeout, plus the bound, and no more.
        started = time.monotonic()
        with pytest.raises(MatrixConnectionError):
            await asyncio.wait_for(api.sync(None, timeout_ms=500), 10)
        assert 0.9 < time.monotonic() - started < 3


class Switchable:
    """Answers 200 to everything, or 502 while ``down``; counts /versions probes."""

    def __init__(self) -> None:
        self.down = False
        self.probes = 0
        self.sends = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path.endswith("/versions"):
            self.probes += 1
        elif "/send/" in request.path:
            self.sends += 1
        if self.down:
            return web.json_response({"errcode": "M_UNKNOWN", "error": "bad gateway"}, status=502)
        if request.path.endswith("/versions"):
            return web.json_response({"versions": ["v1.11"]})
        if "missing" in request.path:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)
        return web.json_response({"event_id": "$sent", "user_id": ME})


@pytest.fixture
async def hs() -> AsyncIterator[tuple[Switchable, str, aiohttp.ClientSession]]:
    server = Switchable()
    async with serve(server.app()) as url, aiohttp.ClientSession() as session:
        yield server, url, session


async def test_a_send_waiting_out_an_outage_goes_as_soon_as_the_homeserver_answers(
    hs: tuple[Switchable, str, aiohttp.ClientSession],
) -> None:
    server, url, session = hs
    reach = Reachability(url, session, interval_s=0.05)
    apis = [
        MatrixAPI(
            url,
            UserId(f"@bot{i}:localhost"),
            "tok",
            session=session,
            requests=RequestSettings(reachability=reach),
        )
        for i in range(5)
    ]
    server.down = True
    # A first wait of 5 s (then longer): without the probe, nothing goes before that.
    delivery = Delivery(initial_s=5, max_s=60)
    sends = [
        asyncio.create_task(delivery.send(api, RoomId("!r:localhost"), "m.x", {}, txn_id="t"))
        for api in apis
    ]
    began = time.monotonic()
    await eventually(lambda: server.sends == 5 and server.probes >= 3, what="probing")
    assert not any(s.done() for s in sends)
    assert reach.down
    probes = server.probes  # probing all along…
    # …once per interval for all five senders, not each (counted against the time taken)
    assert probes <= (time.monotonic() - began) / 0.05 + 2
    server.down = False
    back = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*sends), 30)
    assert time.monotonic() - back < 2.5  # well before the first wait's 5 s
    assert not reach.down
    await asyncio.sleep(0.2)
    assert server.probes <= probes + 2  # the probe stopped once it was answered
    await reach.close()


async def test_no_outage_no_early_wake(hs: tuple[Switchable, str, aiohttp.ClientSession]) -> None:
    _server, url, session = hs
    reach = Reachability(url, session, interval_s=0.05)
    api = MatrixAPI(url, ME, "tok", session=session, requests=RequestSettings(reachability=reach))
    probes = OUTAGE_PROBES._value.get()
    # A refusal is an answer: no probe, and a wait after it is waited out in full.
    with pytest.raises(NotFoundError):
        await api.resolve_alias(RoomAlias("#missing:localhost"))
    assert OUTAGE_PROBES._value.get() == probes
    started = time.monotonic()
    assert not await reach.pause(0.3, RateLimitedError("slow down", retry_after_s=0.3))
    assert time.monotonic() - started >= 0.29
    assert OUTAGE_PROBES._value.get() == probes
    # A 5xx of one endpoint while the homeserver answers: the probe finds it up at
    # once, and the wait is not cut short (no retry storm against a failing endpoint).
    started = time.monotonic()
    assert not await reach.pause(0.3, MatrixConnectionError("reset"))
    assert time.monotonic() - started >= 0.29
    assert not reach.down
    await reach.close()


async def test_supervised_loops_restart_when_the_homeserver_answers_again(
    hs: tuple[Switchable, str, aiohttp.ClientSession],
) -> None:
    server, url, session = hs
    reach = Reachability(url, session, interval_s=0.05)
    api = MatrixAPI(url, ME, "tok", session=session, requests=RequestSettings(reachability=reach))
    supervisor = Supervisor(Backoff(initial_s=30, max_s=60), pause=reach.pause)
    synced = asyncio.Event()

    async def loop(handle: LoopHandle) -> None:
        await api.whoami()
        synced.set()
        await asyncio.Event().wait()

    server.down = True
    handle = supervisor.spawn("sync", loop)
    await eventually(lambda: handle.backing_off, what="the loop to back off")
    assert not synced.is_set()
    server.down = False
    await asyncio.wait_for(synced.wait(), 10)  # not after the 30 s backoff
    await supervisor.stop()
    await reach.close()
