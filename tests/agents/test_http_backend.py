"""The ``http`` backend against a real upstream agent service on loopback, and its SSE parser."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.agents.fakes import FakeAgentService, serve, unused_port

from salon._exceptions import BackendError, ConfigError
from salon.agents.attachments import Attachment, AttachmentWire, wire_context
from salon.agents.backend import ChatMessage, TurnRequest
from salon.agents.errors import BackendRejectedError, BackendUnavailableError
from salon.agents.http_backend import (
    MAX_LINE_BYTES,
    HttpAgentBackend,
    SSEEvent,
    SSEParser,
    wire_request,
)
from salon.agents.registry import build_backend, close_backend
from salon.config.models import HttpBackend as HttpConfig
from salon.config.models import SalonConfig
from salon.ids import AgentId

TOKEN_ENV = "SALON_TEST_AGENT_TOKEN"

REQUEST = TurnRequest(
    agent_id=AgentId("helper"),
    sender="@alice:localhost",
    text="what is on today?",
    session_key="agent:helper:matrix:!room",
    chat_id="42",
    persona="You are kind.",
    history=(ChatMessage("user", "hello"), ChatMessage("assistant", "hi!")),
    for_user="@alice:localhost",
)


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeAgentService, str]]:
    """A running fake agent service and the URL of its turn endpoint."""
    server = FakeAgentService()
    async with serve(server.app()) as url:
        yield server, f"{url}/agent"


@pytest.fixture
async def make_backend() -> AsyncIterator[Callable[..., HttpAgentBackend]]:
    """Build backends; all are closed after the test."""
    made: list[HttpAgentBackend] = []

    def make(url: str, env: dict[str, str] | None = None, **fields: Any) -> HttpAgentBackend:
        config = HttpConfig(**{"type": "http", "base_url": url, "timeout_s": 5, **fields})
        backend = HttpAgentBackend(config, agent_id="helper", env=env or {})
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


async def collect(backend: HttpAgentBackend, request: TurnRequest = REQUEST) -> list[str]:
    return [chunk async for chunk in backend.stream(request)]


async def test_json_reply_and_request_body(
    service: tuple[FakeAgentService, str], make_backend: Any, tmp_path: Path
) -> None:
    server, url = service
    (tmp_path / "cat.png").write_bytes(b"\x89PNG meow")
    cat = Attachment("cat.png", "image/png", 9, tmp_path / "cat.png")
    request = replace(REQUEST, attachments=(cat,))
    assert await collect(make_backend(url), request) == ["Bonjour!"]
    [received] = server.requests
    assert received.path == "/agent"
    assert received.body == {
        "v": 2,
        "agent": "helper",
        "user": "@alice:localhost",
        "for_user": "@alice:localhost",
        "chat_id": "42",
        "session": "agent:helper:matrix:!room",
        "text": "what is on today?",
        "history": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi!"},
        ],
        "persona": "You are kind.",
        "attachments": [
            {
                "name": "cat.png",
                "mime_type": "image/png",
                "size": 9,
                "data": base64.b64encode(b"\x89PNG meow").decode(),
            }
        ],
    }
    assert received.body == wire_request(request)
    assert received.headers["Accept"] == "text/event-stream, application/json"
    assert received.headers["Content-Type"] == "application/json"
    assert "Authorization" not in received.headers


class _Links:
    def link(self, attachment: Attachment) -> str | None:
        return f"http://127.0.0.1:8765/v1/attachments/t0k3n-{attachment.name}"


async def test_a_file_over_the_inline_limit_goes_as_a_link_or_is_left_out(
    service: tuple[FakeAgentService, str], make_backend: Any, tmp_path: Path
) -> None:
    server, url = service
    (tmp_path / "big.pdf").write_bytes(b"%" * 2000)
    big = Attachment("big.pdf", "application/pdf", 2000, tmp_path / "big.pdf")
    request = replace(REQUEST, attachments=(big,))
    with wire_context(AttachmentWire(1000, _Links())):
        await collect(make_backend(url), request)
    with wire_context(AttachmentWire(1000)):
        await collect(make_backend(url), request)
    linked, left_out = (r.body["attachments"][0] for r in server.requests)
    assert linked == {
        "name": "big.pdf",
        "mime_type": "application/pdf",
        "size": 2000,
        "url": "http://127.0.0.1:8765/v1/attachments/t0k3n-big.pdf",
    }
    assert "data" not in left_out and "url" not in left_out
    assert left_out["omitted"].startswith("too large")


async def test_an_attachment_gone_from_disk_fails_the_turn_clearly(
    service: tuple[FakeAgentService, str], make_backend: Any, tmp_path: Path
) -> None:
    _, url = service
    gone = Attachment("gone.txt", "text/plain", 3, tmp_path / "gone.txt")
    with pytest.raises(BackendError, match="cannot read an attachment"):
        await collect(make_backend(url), replace(REQUEST, attachments=(gone,)))


async def test_a_delegated_task_says_whom_it_is_for(
    service: tuple[FakeAgentService, str], make_backend: Any
) -> None:
    server, url = service
    # A task the concierge delegated for Bob: the sender is the agent, for_user the person.
    delegated = replace(REQUEST, sender="@salon_concierge:localhost", for_user="@bob:localhost")
    await collect(make_backend(url), delegated)
    await collect(make_backend(url), replace(REQUEST, for_user=None))
    first, second = server.requests
    assert (first.body["user"], first.body["for_user"]) == (
        "@salon_concierge:localhost",
        "@bob:localhost",
    )
    assert second.body["for_user"] is None  # for nobody in particular: null, not left out


async def test_token_and_configured_headers(
    service: tuple[FakeAgentService, str], make_backend: Any
) -> None:
    server, url = service
    backend = make_backend(
        url, env={TOKEN_ENV: "s3cret"}, token_env=TOKEN_ENV, headers={"X-Tenant": "acme"}
    )
    await collect(backend)
    headers = server.requests[0].headers
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Tenant"] == "acme"


async def test_json_only_when_streaming_is_off(
    service: tuple[FakeAgentService, str], make_backend: Any
) -> None:
    server, url = service
    await collect(make_backend(url, stream=False))
    assert server.requests[0].headers["Accept"] == "application/json"


def test_unset_token_env_is_a_config_error() -> None:
    config = HttpConfig(type="http", base_url="http://127.0.0.1:1/agent", token_env=TOKEN_ENV)
    with pytest.raises(ConfigError, match=f"agents.helper.backend.token_env.*{TOKEN_ENV}") as info:
        HttpAgentBackend(config, agent_id="helper", env={})
    assert info.value.path == "agents.helper.backend.token_env"


@pytest.mark.parametrize("mode", ["sse", "sse-done"])
async def test_sse_deltas(
    service: tuple[FakeAgentService, str], make_backend: Any, mode: str
) -> None:
    server, url = service
    server.mode = mode
    assert await collect(make_backend(url)) == ["Bon", "jour", "!"]


async def test_sse_error_event(service: tuple[FakeAgentService, str], make_backend: Any) -> None:
    server, url = service
    server.mode = "sse-error"
    got: list[str] = []
    with pytest.raises(BackendRejectedError, match="reported an error: tool crashed"):
        async for chunk in make_backend(url).stream(REQUEST):
            got.append(chunk)
    assert got == ["Bon"]


async def test_sse_without_done_is_an_error(
    service: tuple[FakeAgentService, str], make_backend: Any
) -> None:
    server, url = service
    server.mode = "sse-truncated"
    with pytest.raises(BackendUnavailableError, match="ended before done"):
        await collect(make_backend(url))


async def test_json_error_reply(service: tuple[FakeAgentService, str], make_backend: Any) -> None:
    server, url = service
    server.mode = "json-error"
    with pytest.raises(BackendRejectedError, match="the upstream model is out of credits"):
        await collect(make_backend(url))


async def test_bad_gateway(service: tuple[FakeAgentService, str], make_backend: Any) -> None:
    server, url = service
    server.mode, server.status = "status", 502
    with pytest.raises(BackendUnavailableError) as info:
        await collect(make_backend(url))
    assert str(info.value) == f"{url} answered HTTP 502: upstream exploded"
    assert info.value.status == 502


async def test_client_error_status(
    service: tuple[FakeAgentService, str], make_backend: Any
) -> None:
    server, url = service
    server.mode, server.status = "status", 403
    with pytest.raises(BackendRejectedError, match="HTTP 403") as info:
        await collect(make_backend(url))
    assert info.value.status == 403


async def test_timeout(service: tuple[FakeAgentService, str], make_backend: Any) -> None:
    server, url = service
    server.delay_s = 1.0
    with pytest.raises(BackendUnavailableError, match=r"did not answer within 0\.2 s"):
        await collect(make_backend(url, timeout_s=0.2))


async def test_unreachable(make_backend: Any) -> None:
    url = f"http://127.0.0.1:{unused_port()}/agent"
    with pytest.raises(BackendUnavailableError, match=f"cannot reach {url}"):
        await collect(make_backend(url))


async def test_session_reopens_after_aclose(
    service: tuple[FakeAgentService, str], make_backend: Any
) -> None:
    _, url = service
    backend = make_backend(url)
    await collect(backend)
    await backend.aclose()
    assert await collect(backend) == ["Bonjour!"]


async def test_registry_builds_it(
    service: tuple[FakeAgentService, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = service
    monkeypatch.setenv(TOKEN_ENV, "tok")
    backend_cfg = {"type": "http", "base_url": url, "token_env": TOKEN_ENV}
    config = SalonConfig.model_validate({"agents": {"helper": {"backend": backend_cfg}}})
    backend = build_backend(config.agent("helper"))
    assert isinstance(backend, HttpAgentBackend)
    try:
        assert [c async for c in backend.stream(REQUEST)] == ["Bonjour!"]
    finally:
        await close_backend(backend)
    assert server.requests[0].headers["Authorization"] == "Bearer tok"


# --- the SSE parser -----------------------------------------------------------------


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def test_sse_line_endings_comments_and_multiline_data() -> None:
    stream = (
        b": comment\r\n"
        b"data: one\r\n\r\n"
        b"event: progress\ndata: two\ndata:  three\nid: 5\n\n"
        b"data:four\r\rdata\n\n"
    )
    assert parse(stream) == [
        SSEEvent("message", "one"),
        SSEEvent("progress", "two\n three", "5"),
        SSEEvent("message", "four", "5"),
        SSEEvent("message", "", "5"),
    ]


def test_sse_split_anywhere() -> None:
    stream = "data: héllo\r\n\r\nevent: error\r\ndata: {}\r\n\r\n".encode()
    whole = parse(stream)
    assert whole == [SSEEvent("message", "héllo"), SSEEvent("error", "{}")]
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == whole


def test_sse_blank_lines_without_data_dispatch_nothing() -> None:
    assert parse(b"\n\n: keep-alive\n\nevent: ping\n\n") == []


def test_sse_unterminated_last_event_and_bom() -> None:
    assert parse(b"\xef\xbb\xbfdata: a\n\ndata: b") == [
        SSEEvent("message", "a"),
        SSEEvent(data="b"),
    ]
    assert parse(b"data: c\r") == [SSEEvent(data="c")]


# --- bounds: line and event size, and the reply's deadline ---------------------------

StreamBody = Callable[[web.StreamResponse], Awaitable[None]]


@contextlib.asynccontextmanager
async def sse_service(body: StreamBody) -> AsyncIterator[str]:
    """An upstream service whose SSE reply is whatever ``body`` writes."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await body(resp)
        return resp

    app = web.Application()
    app.router.add_post("/agent", handle)
    async with serve(app) as url:
        yield f"{url}/agent"


@contextlib.asynccontextmanager
async def bounded_backend(url: str, **bounds: Any) -> AsyncIterator[HttpAgentBackend]:
    config = HttpConfig(type="http", base_url=url, timeout_s=5)
    backend = HttpAgentBackend(config, agent_id="helper", env={}, **bounds)
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_a_huge_line_without_newline_fails_fast() -> None:
    async def eight_mib_without_newline(resp: web.StreamResponse) -> None:
        piece = b"x" * (256 * 1024)
        for _ in range(32):
            await resp.write(piece)
        await asyncio.sleep(30)  # and then nothing: only the cap can end this

    async with sse_service(eight_mib_without_newline) as url, bounded_backend(url) as backend:
        started = time.monotonic()
        with pytest.raises(BackendRejectedError) as info:
            await asyncio.wait_for(collect(backend), 30)
        elapsed = time.monotonic() - started
    assert elapsed < 10  # at the cap, not when the server's 30 s silence ends
    assert str(info.value) == (
        f"{url} sent an SSE line longer than {MAX_LINE_BYTES} bytes (max_line_bytes)"
    )
    assert MAX_LINE_BYTES == 1 << 20


async def test_an_event_over_the_cap_fails() -> None:
    async def many_data_lines(resp: web.StreamResponse) -> None:
        await resp.write(b'data: {"delta": "fine"}\n\n')
        for _ in range(100):  # one event, never ended by a blank line
            await resp.write(b"data: " + b"y" * 1000 + b"\n")
        await asyncio.sleep(30)

    async with (
        sse_service(many_data_lines) as url,
        bounded_backend(url, max_event_bytes=64 * 1024) as backend,
    ):
        got: list[str] = []
        with pytest.raises(
            BackendRejectedError, match=r"larger than 65536 bytes \(max_event_bytes"
        ):
            async for chunk in backend.stream(REQUEST):
                got.append(chunk)
    assert got == ["fine"]


async def test_endless_keep_alives_end_at_the_deadline() -> None:
    async def keep_alive_forever(resp: web.StreamResponse) -> None:
        await resp.write(b'data: {"delta": "thinking"}\n\n')
        while True:
            await resp.write(b": keep-alive\n\n")
            await asyncio.sleep(0.05)

    async with (
        sse_service(keep_alive_forever) as url,
        bounded_backend(url, deadline_s=0.6) as backend,
    ):
        started = time.monotonic()
        got: list[str] = []
        with pytest.raises(BackendUnavailableError) as info:
            async with asyncio.timeout(30):
                async for chunk in backend.stream(REQUEST):
                    got.append(chunk)
        elapsed = time.monotonic() - started
    assert got == ["thinking"]
    assert 0.6 <= elapsed < 10  # the keep-alives never end it: only the deadline does
    assert str(info.value) == f"{url} did not finish its reply within 0.6 s (deadline_s)"


async def test_a_stream_within_the_bounds_still_works() -> None:
    async def slow_but_fine(resp: web.StreamResponse) -> None:
        for text in ("Bon", "jour"):
            await resp.write(b": keep-alive\r\n")
            await resp.write(f'data: {{"delta": "{text}"}}\r\n\r\n'.encode())
            await asyncio.sleep(0.05)
        await resp.write(b"data: [DONE]\n\n")

    bounds = {"max_line_bytes": 64, "max_event_bytes": 64, "deadline_s": 5.0}
    async with sse_service(slow_but_fine) as url, bounded_backend(url, **bounds) as backend:
        assert await collect(backend) == ["Bon", "jour"]


def test_parser_caps_count_bytes_across_chunks() -> None:
    parser = SSEParser(max_line_bytes=10, max_event_bytes=12)
    assert parser.feed(b"data: 1234") == []  # 10 bytes so far: at the cap is fine
    with pytest.raises(BackendRejectedError, match="longer than 10 bytes"):
        parser.feed(b"5")
    parser = SSEParser(max_line_bytes=10, max_event_bytes=12)
    assert parser.feed(b"data:1234\ndata:1234\ndata:") == []  # 2 x (4 bytes + newline)
    with pytest.raises(BackendRejectedError, match="larger than 12 bytes"):
        parser.feed(b"1234\n")
    # Multi-byte characters are counted in bytes, not characters.
    parser = SSEParser(max_line_bytes=10)
    assert parser.feed("data:éé\n".encode()) == []  # 9 bytes
    with pytest.raises(BackendRejectedError):
        parser.feed("data:ééé\n".encode())  # 8 characters, 11 bytes


def test_parser_is_linear_in_the_stream() -> None:
    parser = SSEParser(max_line_bytes=16 << 20, max_event_bytes=16 << 20)
    piece = b"z" * (64 * 1024)
    started = time.monotonic()
    assert parser.feed(b"data: ") == []
    for _ in range(128):  # 8 MiB in 64 KiB reads, no line end until the last one
        assert parser.feed(piece) == []
    [event] = parser.feed(b"\n\n")
    assert time.monotonic() - started < 1.0
    assert len(event.data) == 8 << 20
