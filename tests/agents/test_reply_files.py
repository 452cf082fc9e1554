"""Backends answering with files: ``python`` plugins yield or return them, an
``http`` service lists them (base64) in its JSON answer; the turn's outbox gets them."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.agents.fakes import FakeAgentService, serve
from tests.agents.sample_plugin import NOTE

from salon.agents.backend import TurnRequest
from salon.agents.errors import BackendRejectedError, PluginError
from salon.agents.http_backend import HttpAgentBackend
from salon.agents.python_backend import PythonPluginBackend
from salon.agents.reply_files import ReplyFile, attach, from_wire, outbox_context
from salon.config.models import HttpBackend as HttpConfig
from salon.config.models import PythonBackend as PythonConfig
from salon.ids import AgentId

REQUEST = TurnRequest(AgentId("bot"), "@alice:localhost", "a file please", "s", "1")


def plugin(factory: str, **options: Any) -> PythonPluginBackend:
    entry = f"tests.agents.sample_plugin:{factory}"
    return PythonPluginBackend(
        PythonConfig(type="python", entry=entry, options=options), agent_id="bot"
    )


async def run(backend: Any) -> tuple[str, list[ReplyFile]]:
    with outbox_context() as box:
        text = "".join([chunk async for chunk in backend.stream(REQUEST)])
    return text, box.files


async def test_a_generator_yields_a_file_among_its_chunks() -> None:
    assert await run(plugin("file_generator")) == ("here it is", [NOTE])


async def test_an_async_function_returns_text_and_files() -> None:
    assert await run(plugin("file_returner")) == ("see attached", [NOTE])


async def test_anything_else_returned_is_a_clear_plugin_error() -> None:
    with pytest.raises(PluginError, match="returned int, expected str or ReplyFile"):
        await run(plugin("file_returner", bad=True))


def test_attach_outside_a_turn_drops_the_file_without_failing() -> None:
    attach(NOTE)  # no outbox: logged, nothing raised


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeAgentService, str]]:
    server = FakeAgentService(chunks=["done"])
    async with serve(server.app()) as url:
        yield server, f"{url}/agent"


async def test_an_http_json_answer_carries_files(service: tuple[FakeAgentService, str]) -> None:
    server, url = service
    data = b"\x00\x01binary\xff"
    server.attachments = [
        {
            "name": "out.bin",
            "mime_type": "application/octet-stream",
            "data": base64.b64encode(data).decode(),
        }
    ]
    backend = HttpAgentBackend(HttpConfig(type="http", base_url=url), agent_id="h", env={})
    try:
        assert await run(backend) == (
            "done",
            [ReplyFile("out.bin", "application/octet-stream", data)],
        )
        server.attachments = [{"name": "x.txt", "mime_type": "text/plain", "data": "not base64!"}]
        with pytest.raises(BackendRejectedError, match=r"bad attachment: attachment 'x\.txt'"):
            await run(backend)
    finally:
        await backend.aclose()


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("nope", "not an object"),
        ({"mime_type": "text/plain", "data": ""}, "no name"),
        ({"name": "a", "mime_type": "plain", "data": ""}, "not a mime type"),
        ({"name": "a", "mime_type": "text/plain"}, "no base64 data"),
    ],
)
def test_bad_wire_entries_are_named(entry: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        from_wire(entry)


def test_a_wire_entry_without_a_mime_type_is_octet_stream() -> None:
    assert from_wire({"name": "a", "data": "YQ=="}) == ReplyFile(
        "a", "application/octet-stream", b"a"
    )
