"""The API server binds its port itself: a taken one moves it to the next (when allowed),
two servers started together get two ports, and the port it got is the one it reports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any, cast

import aiohttp
import pytest
from structlog.testing import capture_logs

from salon._exceptions import ConfigError
from salon.api.context import ApiContext
from salon.api.server import ApiServer
from salon.config.models import ApiConfig


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on (as a second `salon up` would)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def server(port: int, tries: int) -> ApiServer:
    config = ApiConfig(listen=f"127.0.0.1:{port}", port_tries=tries, token_env=None)
    return ApiServer(config, cast("ApiContext", object()), "t0ken")


async def healthz(port: int) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return await response.json()


async def test_a_taken_port_moves_the_server_to_the_next_one(busy_port: int) -> None:
    api = server(busy_port, tries=10)
    with capture_logs() as logs:
        await api.start()
    try:
        assert busy_port < api.port < busy_port + 10
        assert api.url == f"http://127.0.0.1:{api.port}"
        assert await healthz(api.port) == {"ok": True}
        said = [e for e in logs if e["event"] == "api.port_taken"]
        assert said and said[0]["wanted"] == busy_port and said[0]["port"] == api.port
    finally:
        await api.stop()


async def test_a_taken_port_without_tries_is_a_clear_error(busy_port: int) -> None:
    with pytest.raises(ConfigError, match=f"port {busy_port} on 127.0.0.1 is in use"):
        await server(busy_port, tries=1).start()


async def test_two_servers_started_together_get_two_ports() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    first, second = server(port, tries=20), server(port, tries=20)
    await asyncio.gather(first.start(), second.start())
    try:
        assert first.port != second.port
        assert port in (first.port, second.port)
        for api in (first, second):
            assert await healthz(api.port) == {"ok": True}
    finally:
        await asyncio.gather(first.stop(), second.stop())


async def test_port_zero_reports_the_port_it_got() -> None:
    api = server(0, tries=1)
    await api.start()
    try:
        assert api.port > 0
        assert await healthz(api.port) == {"ok": True}
    finally:
        await api.stop()
