"""What every request passes before a route: an allowed ``Host``, the bearer token
(any header text a 401, never a crash), JSON bodies sent as JSON, and bodies no
parser chokes on. Each refusal has its stable code, and nothing was done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.api.rig import AUTH, TOKEN, ApiRig, rig_and_client

from salon.api.guards import HostCheck, split_host
from salon.api.server import build_app

Client = TestClient[Any, Any]


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def _code(response: Any, status: int) -> str:
    body = await response.json()
    assert response.status == status, body
    return str(body["error"]["code"])


def _operator_messages(rig: ApiRig) -> list[Any]:
    return [
        e
        for room in rig.hs.rooms.values()
        for _, e in room.timeline
        if e["sender"] == rig.operator.user_id and e["type"] == "m.room.message"
    ]


# --- Content-Type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_json_body_sent_as_a_form_or_text_is_415(
    rc: tuple[ApiRig, Client], content_type: str
) -> None:
    # What a cross-site <form> (or fetch without a preflight) can send.
    rig, client = rc
    body = b'{"to": "coder", "text": "hi"}'
    headers = {**AUTH, "Content-Type": content_type}
    for path in ("/api/v1/messages", "/v1/chat/completions", "/api/v1/agents/spawn"):
        response = await client.post(path, data=body, headers=headers)
        assert await _code(response, 415) == "unsupported_media_type"
    assert _operator_messages(rig) == []


async def test_json_with_a_charset_is_accepted(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    headers = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    response = await client.post(
        "/api/v1/messages", data=b'{"to": "zed", "text": "x"}', headers=headers
    )
    assert await _code(response, 404) == "agent_not_found"  # past the guard


# --- Host ------------------------------------------------------------------------------


async def test_a_request_for_another_host_name_is_421(rc: tuple[ApiRig, Client]) -> None:
    # DNS rebinding: the browser sends the attacker's name in Host.
    _, client = rc
    port = client.port
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", ""):
        response = await client.get("/api/v1/agents", headers={**AUTH, "Host": host})
        assert await _code(response, 421) == "bad_host", host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}", f"[::1]:{port}"):
        response = await client.get("/api/v1/agents", headers={**AUTH, "Host": host})
        assert response.status == 200, host
    # /healthz tells nothing but "alive": a health check calls it by any name, no token.
    response = await client.get("/healthz", headers={"Host": "evil.example"})
    assert response.status == 200


async def test_allowed_hosts_add_names(rc: tuple[ApiRig, Client]) -> None:
    rig, _ = rc
    app = build_app(rig.ctx, TOKEN, "127.0.0.1", ["salon.example.com", "proxy.lan:8443"])
    async with TestClient(TestServer(app)) as client:
        for host, status in (
            ("salon.example.com", 200),
            ("salon.example.com:443", 200),
            ("proxy.lan:8443", 200),
            ("proxy.lan:8444", 421),
            (f"localhost:{client.port}", 200),  # the CLI on this machine still gets in
        ):
            response = await client.get("/api/v1/agents", headers={**AUTH, "Host": host})
            assert response.status == status, host


def test_host_header_parsing() -> None:
    assert split_host("Example.COM.:80") == ("example.com", 80)
    assert split_host("[::1]:8765") == ("[::1]", 8765)
    assert split_host("[::1]") == ("[::1]", None)
    for bad in ("::1", "[::1", "[::1]x", "a:b", "a:99999", ":80", ""):
        assert split_host(bad) is None, bad
    check = HostCheck("::", ["Extra.Example"])
    assert check.allows("[::]:8765", 8765) and check.allows("extra.example:1", 8765)
    assert not check.allows("localhost", 8765) and check.allows("localhost", 80)


# --- the token -------------------------------------------------------------------------


async def test_a_non_ascii_token_is_401_not_a_crash(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    request = (
        f"GET /api/v1/agents HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\n"
        "Authorization: Bearer токен-é\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode("utf-8"))
    await writer.drain()
    answer = (await reader.read()).decode("utf-8", "replace")
    writer.close()
    assert answer.startswith("HTTP/1.1 401"), answer[:200]
    assert '"code": "unauthorized"' in answer


# --- bodies no parser chokes on --------------------------------------------------------


async def test_deeply_nested_json_is_400_bad_json(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    deep = b'{"to": "coder", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = {**AUTH, "Content-Type": "application/json"}
    for path in ("/api/v1/messages", "/v1/chat/completions"):
        response = await client.post(path, data=deep, headers=headers)
        assert await _code(response, 400) == "bad_json"
    assert _operator_messages(rig) == []


async def test_a_body_over_the_size_limit_is_413(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    big = b'{"to": "coder", "text": "' + b"x" * (1024**2 + 1) + b'"}'
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post("/api/v1/messages", data=big, headers=headers)
    assert await _code(response, 413) == "body_too_large"


@pytest.mark.parametrize(
    ("ttl", "code"),
    [
        ("NaN", "bad_json"),
        ("Infinity", "bad_json"),
        ("-Infinity", "bad_json"),
        ("1e400", "bad_json"),  # a float overflows to infinity
        ("1e308", "invalid_request"),
        ("1" + "0" * 400, "invalid_request"),  # an int no float holds
    ],
)
async def test_spawn_refuses_a_ttl_that_is_no_finite_number(
    rc: tuple[ApiRig, Client], ttl: str, code: str
) -> None:
    rig, client = rc
    asked: list[Any] = []

    async def spawn(*args: Any) -> str:
        asked.append(args)
        return "coder"

    rig.ctx.spawn = spawn
    body = f'{{"from": "coder", "ttl_s": {ttl}}}'.encode()
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post("/api/v1/agents/spawn", data=body, headers=headers)
    assert await _code(response, 400) == code
    assert "ttl_s: " in (await response.json())["error"]["message"]  # the field named
    assert asked == []
