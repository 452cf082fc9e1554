"""Media messages: what they name, encrypted files checked and opened, downloads whole
or not at all (a loopback server stands in for the homeserver's media endpoints)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tests.agents.fakes import serve

from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.download import download_media
from salon.matrix.media import (
    MediaError,
    MediaTooLargeError,
    decrypt_file,
    encrypted_file,
    parse_media,
    safe_name,
)

MXC = "mxc://example.org/AbC123"


def _unpadded(raw: bytes, urlsafe: bool = False) -> str:
    enc = base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)
    return enc.decode().rstrip("=")


def _encrypt(plain: bytes) -> tuple[bytes, dict[str, Any]]:
    key, iv = os.urandom(32), os.urandom(8) + b"\0" * 8
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    cipher = enc.update(plain) + enc.finalize()
    file = {
        "v": "v2",
        "url": MXC,
        "iv": _unpadded(iv),
        "hashes": {"sha256": _unpadded(hashlib.sha256(cipher).digest())},
        "key": {"kty": "oct", "alg": "A256CTR", "k": _unpadded(key, urlsafe=True)},
    }
    return cipher, file


def test_a_text_message_is_no_media() -> None:
    assert parse_media({"msgtype": "m.text", "body": "hi"}) is None


def test_a_file_without_caption_and_an_image_with_one() -> None:
    ref = parse_media(
        {
            "msgtype": "m.file",
            "body": "a.pdf",
            "url": MXC,
            "info": {"mimetype": "application/pdf", "size": 5},
        }
    )
    assert ref is not None
    assert (ref.name, ref.mime_type, ref.declared_size, ref.caption) == (
        "a.pdf",
        "application/pdf",
        5,
        "",
    )
    assert ref.server_and_id == ("example.org", "AbC123")
    captioned = parse_media(
        {"msgtype": "m.image", "body": "look!", "filename": "cat.png", "url": MXC}
    )
    assert captioned is not None
    assert (captioned.name, captioned.caption, captioned.mime_type) == (
        "cat.png",
        "look!",
        "application/octet-stream",  # no info: nothing is guessed
    )


@pytest.mark.parametrize(
    "content",
    [
        {"msgtype": "m.file", "body": "x"},  # no url at all
        {"msgtype": "m.file", "body": "x", "url": "https://evil.example/x"},
        {"msgtype": "m.file", "body": "x", "url": "mxc://example.org/../../etc"},
        {"msgtype": "m.file", "body": "x", "file": {"url": MXC, "key": {}, "hashes": {}}},
    ],
)
def test_malformed_media_is_refused(content: dict[str, Any]) -> None:
    with pytest.raises(MediaError):
        parse_media(content)


def test_names_cannot_climb_out_of_the_directory() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\boot.ini") == "boot.ini"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("a\x00b\nc.txt") == "abc.txt"


def test_an_encrypted_file_is_decrypted_after_its_hash_is_checked(tmp_path: Path) -> None:
    plain = os.urandom(100_000)
    cipher, file = _encrypt(plain)
    (tmp_path / "c").write_bytes(cipher)
    decrypt_file(tmp_path / "c", tmp_path / "p", encrypted_file(file))
    assert (tmp_path / "p").read_bytes() == plain
    file["hashes"] = {"sha256": _unpadded(hashlib.sha256(b"x").digest())}
    with pytest.raises(MediaError, match="SHA-256"):
        decrypt_file(tmp_path / "c", tmp_path / "q", encrypted_file(file))
    assert not (tmp_path / "q").exists()  # nothing decrypted


class _MediaServer:
    """Answers the authenticated media endpoint, or only the legacy one."""

    def __init__(self, body: bytes, *, legacy_only: bool = False) -> None:
        self.body = body
        self.legacy_only = legacy_only
        self.paths: list[str] = []
        self.auth: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_matrix/{rest:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        self.auth.append(request.headers.get("Authorization"))
        if self.legacy_only and request.path.startswith("/_matrix/client/v1/media"):
            return web.json_response({"errcode": "M_UNRECOGNIZED"}, status=404)
        response = web.StreamResponse()  # chunked: no Content-Length to trust
        await response.prepare(request)
        for i in range(0, len(self.body), 1000):
            await response.write(self.body[i : i + 1000])
        await response.write_eof()
        return response


async def _download(server: _MediaServer, content: dict[str, Any], dest: Path, cap: int) -> int:
    ref = parse_media(content)
    assert ref is not None
    async with serve(server.app()) as url, aiohttp.ClientSession() as session:
        api = MatrixAPI(url, UserId("@a:example.org"), "tok", session=session)
        return await download_media(api, ref, dest, cap)


async def test_download_uses_the_authenticated_api_and_stores_the_file(tmp_path: Path) -> None:
    server = _MediaServer(b"x" * 5000)
    dest = tmp_path / "in" / "f.bin"
    content = {"msgtype": "m.file", "body": "f.bin", "url": MXC}
    assert await _download(server, content, dest, 10_000) == 5000
    assert dest.read_bytes() == b"x" * 5000
    assert server.paths == ["/_matrix/client/v1/media/download/example.org/AbC123"]
    assert server.auth == ["Bearer tok"]
    assert oct(dest.parent.stat().st_mode & 0o777) == "0o700"


async def test_download_falls_back_to_the_legacy_api(tmp_path: Path) -> None:
    server = _MediaServer(b"y" * 10, legacy_only=True)
    content = {"msgtype": "m.file", "body": "f.bin", "url": MXC}
    assert await _download(server, content, tmp_path / "f.bin", 100) == 10
    assert server.paths[-1] == "/_matrix/media/v3/download/example.org/AbC123"


async def test_over_the_cap_nothing_is_left_on_disk(tmp_path: Path) -> None:
    server = _MediaServer(b"z" * 5000)
    content = {"msgtype": "m.file", "body": "f.bin", "url": MXC}
    with pytest.raises(MediaTooLargeError) as caught:
        await _download(server, content, tmp_path / "f.bin", 2500)
    assert caught.value.limit == 2500
    assert os.listdir(tmp_path) == []  # no part, no file
    # A declared size over the cap is refused before any request.
    declared = {**content, "info": {"size": 9999}}
    with pytest.raises(MediaTooLargeError):
        await _download(server, declared, tmp_path / "f.bin", 2500)
    assert len(server.paths) == 1


async def test_an_encrypted_download_is_decrypted_or_refused_whole(tmp_path: Path) -> None:
    plain = os.urandom(4000)
    cipher, file = _encrypt(plain)
    server = _MediaServer(cipher)
    content = {"msgtype": "m.audio", "body": "v.ogg", "file": file}
    assert await _download(server, content, tmp_path / "v.ogg", 10_000) == 4000
    assert (tmp_path / "v.ogg").read_bytes() == plain
    tampered = {**file, "hashes": {"sha256": _unpadded(hashlib.sha256(b"-").digest())}}
    with pytest.raises(MediaError):
        await _download(server, {**content, "file": tampered}, tmp_path / "w.ogg", 10_000)
    assert os.listdir(tmp_path) == ["v.ogg"]
