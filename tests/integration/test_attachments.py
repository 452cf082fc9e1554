"""Files people send reach the agent: downloaded through the authenticated media API
of the real Synapse (plain and encrypted), stored in the agent's home, described by
the echo backend; an oversized file gets a notice and nothing is stored."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tests.agents.fakes import serve

from salon.agents.attachments import Attachment
from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.metrics import ATTACHMENTS
from salon.store.records import InboxState
from salon.turns.spec import TurnSpec

from ..conftest import register_user
from . import plugins
from .conftest import Person, salon_config
from .test_appservice import SECRETS, as_setup  # noqa: F401  (a fixture)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def _echo_room(person: Person, config: Any, server: str) -> str:
    return await person.join(f"#{config.agent_room_alias_localpart('echo')}:{server}")


async def _send(person: Person, room_id: str, content: dict[str, Any]) -> str:
    return await person.say(room_id, content.pop("body"), **content)


async def _stored(gateway: Gateway, event_id: str) -> tuple[Attachment, ...]:
    assert gateway.store is not None
    row = await gateway.store.turns.get(event_id, "echo")
    assert row is not None
    return TurnSpec.from_json(row.spec).attachments


async def test_a_file_and_a_captioned_image_reach_the_echo_agent(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path, data_dir=str(tmp_path / "data"))
    gateway = await gateways(config, invite=[person.user_id])
    room_id = await _echo_room(person, config, synapse.server_name)

    pdf = b"%PDF-1.4 not really a pdf\n" * 40
    mxc = await person.api.upload_media(pdf, mime_type="application/pdf", filename="report.pdf")
    info = {"mimetype": "application/pdf", "size": len(pdf)}
    asked = await _send(
        person, room_id, {"msgtype": "m.file", "body": "report.pdf", "url": mxc, "info": info}
    )
    reply = await person.wait_reply(room_id, asked)
    assert reply["content"]["body"] == f"[attachment: report.pdf application/pdf {len(pdf)} bytes]"
    (stored,) = await _stored(gateway, asked)
    assert stored.path.read_bytes() == pdf  # kept in the agent's home, whole
    assert stored.path.is_relative_to(tmp_path / "data" / "agents" / "echo" / "attachments")

    # An image with a caption: the caption is the text, the image its attachment.
    mxc = await person.api.upload_media(PNG, mime_type="image/png", filename="dot.png")
    asked = await _send(
        person,
        room_id,
        {
            "msgtype": "m.image",
            "body": "what is this?",
            "filename": "dot.png",
            "url": mxc,
            "info": {"mimetype": "image/png", "size": len(PNG), "w": 1, "h": 1},
        },
    )
    reply = await person.wait_reply(room_id, asked)
    assert (
        reply["content"]["body"]
        == f"what is this?\n[attachment: dot.png image/png {len(PNG)} bytes]"
    )


async def test_an_encrypted_file_is_checked_and_decrypted(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path, data_dir=str(tmp_path / "data"))
    gateway = await gateways(config, invite=[person.user_id])
    room_id = await _echo_room(person, config, synapse.server_name)

    plain = os.urandom(3000)
    key, iv = os.urandom(32), os.urandom(8) + b"\0" * 8  # the spec's 64-bit counter
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    cipher = encryptor.update(plain) + encryptor.finalize()
    mxc = await person.api.upload_media(cipher, mime_type="application/octet-stream")

    def unpadded(raw: bytes, urlsafe: bool = False) -> str:
        enc = base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)
        return enc.decode().rstrip("=")

    file = {
        "v": "v2",
        "url": mxc,
        "iv": unpadded(iv),
        "hashes": {"sha256": unpadded(hashlib.sha256(cipher).digest())},
        "key": {
            "kty": "oct",
            "alg": "A256CTR",
            "ext": True,
            "key_ops": ["encrypt", "decrypt"],
            "k": unpadded(key, urlsafe=True),
        },
    }
    info = {"mimetype": "audio/ogg", "size": len(plain)}
    asked = await _send(
        person, room_id, {"msgtype": "m.audio", "body": "voice.ogg", "file": file, "info": info}
    )
    reply = await person.wait_reply(room_id, asked)
    assert reply["content"]["body"] == f"[attachment: voice.ogg audio/ogg {len(plain)} bytes]"
    (stored,) = await _stored(gateway, asked)
    assert stored.path.read_bytes() == plain

    # The same file with a wrong hash is refused, not decrypted: a notice, a reason.
    bad = {**file, "hashes": {"sha256": unpadded(hashlib.sha256(b"other").digest())}}
    asked = await _send(
        person, room_id, {"msgtype": "m.file", "body": "tampered.bin", "file": bad, "info": {}}
    )
    notice = await person.wait_reply(room_id, asked)
    assert notice["content"]["msgtype"] == "m.notice"
    assert "tampered.bin could not be fetched" in notice["content"]["body"]
    assert gateway.store is not None
    row = await gateway.store.inbox.get(asked)
    assert row is not None and row.reason is not None
    assert row.reason.startswith("attachment_failed")
    assert await gateway.store.turns.get(asked, "echo") is None


async def test_an_oversized_file_gets_a_notice_and_nothing_is_stored(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    data_dir = tmp_path / "data"
    config = salon_config(
        synapse, tmp_path, data_dir=str(data_dir), attachments={"max_bytes": 1000}
    )
    gateway = await gateways(config, invite=[person.user_id])
    assert gateway.store is not None
    room_id = await _echo_room(person, config, synapse.server_name)
    big = os.urandom(5000)
    mxc = await person.api.upload_media(big, mime_type="application/zip", filename="big.zip")
    before = ATTACHMENTS.labels(outcome="too_large")._value.get()
    # No size in `info`: the cap is found while downloading, and the part is removed.
    asked = await _send(person, room_id, {"msgtype": "m.file", "body": "big.zip", "url": mxc})
    notice = await person.wait_reply(room_id, asked)
    assert notice["content"]["msgtype"] == "m.notice"
    assert "big.zip is too large" in notice["content"]["body"]
    assert "the limit is 1000 bytes" in notice["content"]["body"]
    deadline = asyncio.get_running_loop().time() + 10
    while (row := await gateway.store.inbox.get(asked)) is None or row.state is InboxState.NEW:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    assert (row.state, row.reason) == (InboxState.DONE, "attachment_too_large")
    assert ATTACHMENTS.labels(outcome="too_large")._value.get() == before + 1
    assert await gateway.store.turns.get(asked, "echo") is None  # no turn ran
    stored = data_dir / "agents" / "echo" / "attachments"
    assert not [p for p in stored.rglob("*") if p.is_file()]  # not even a part


async def test_a_python_backend_gets_the_image_bytes_and_mime_type(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    entry = {"type": "python", "entry": "tests.integration.plugins:recorder"}
    config = salon_config(
        synapse, tmp_path, data_dir=str(tmp_path / "data"), agents={"echo": {"backend": entry}}
    )
    await gateways(config, invite=[person.user_id])
    room_id = await _echo_room(person, config, synapse.server_name)
    mxc = await person.api.upload_media(PNG, mime_type="image/png", filename="dot.png")
    content = {
        "msgtype": "m.image",
        "body": "dot.png",
        "url": mxc,
        "info": {"mimetype": "image/png"},
    }
    asked = await _send(person, room_id, content)
    assert (await person.wait_reply(room_id, asked))["content"]["body"] == "recorded 1 file(s)"
    (request,) = plugins.RECORDED.pop(config.agents["echo"].id)
    (image,) = request.attachments
    assert (image.name, image.mime_type, image.size) == ("dot.png", "image/png", len(PNG))
    assert image.read() == PNG
    assert request.text == ""  # no caption


async def test_an_http_backend_fetches_a_big_file_by_its_link(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetched: list[tuple[int, bytes, str]] = []

    async def turn(request: web.Request) -> web.Response:
        body = await request.json()
        (entry,) = body["attachments"]
        async with aiohttp.ClientSession() as session, session.get(entry["url"]) as got:
            fetched.append((got.status, await got.read(), got.headers["Content-Type"]))
        return web.json_response({"reply": f"v{body['v']} {entry['name']} {entry['size']}"})

    app = web.Application()
    app.router.add_post("/agent", turn)
    monkeypatch.setenv("SALON_TEST_ATTACH_TOKEN", "t0k3n-" + os.urandom(4).hex())
    async with serve(app) as url:
        backend = {"type": "http", "base_url": f"{url}/agent", "stream": False}
        config = salon_config(
            synapse,
            tmp_path,
            data_dir=str(tmp_path / "data"),
            agents={"echo": {"backend": backend}},
            attachments={"inline_max_bytes": 100},
            api={"listen": "127.0.0.1:0", "token_env": "SALON_TEST_ATTACH_TOKEN"},
        )
        await gateways(config, invite=[person.user_id])
        room_id = await _echo_room(person, config, synapse.server_name)
        data = os.urandom(2000)
        mxc = await person.api.upload_media(data, mime_type="application/pdf", filename="a.pdf")
        content = {"msgtype": "m.file", "body": "a.pdf", "url": mxc}
        asked = await _send(person, room_id, {**content, "info": {"mimetype": "application/pdf"}})
        reply = await person.wait_reply(room_id, asked)
    assert reply["content"]["body"] == "v2 a.pdf 2000"
    assert fetched == [(200, data, "application/pdf")]


@pytest.fixture
def appservice_setup(as_setup: tuple[Any, SalonConfig]) -> tuple[Any, SalonConfig]:  # noqa: F811
    """A Synapse with an appservice registration, and the config in appservice mode."""
    return as_setup


async def test_in_appservice_mode_the_agent_downloads_as_itself(
    appservice_setup: tuple[Any, SalonConfig],
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    hs, config = appservice_setup
    config = config.model_copy(update={"data_dir": str(tmp_path / "data")})
    person = Person(await register_user(hs), hs.base_url, http)
    await gateways(config, invite=[person.user_id], secrets=SECRETS)
    room_id = await person.join(f"#{config.agent_room_alias_localpart('echo')}:localhost")
    mxc = await person.api.upload_media(PNG, mime_type="image/png", filename="dot.png")
    info = {"mimetype": "image/png", "size": len(PNG)}
    content = {"msgtype": "m.image", "body": "dot.png", "url": mxc, "info": info}
    asked = await _send(person, room_id, content)
    reply = await person.wait_reply(room_id, asked)
    assert reply["content"]["body"] == f"[attachment: dot.png image/png {len(PNG)} bytes]"
