"""Media messages (``m.image``, ``m.file``, ``m.audio``, ``m.video``): what a message
says of its file, and how an encrypted file (``content.file``) is opened.

An encrypted attachment is AES-256-CTR over the whole file, with the key as a JWK
and the SHA-256 of the *ciphertext* in ``hashes``; the hash is checked before a
byte is decrypted (the spec's rule: a file whose hash does not match is refused).
The ``cryptography`` package does the AES; mautrix's helpers need libolm.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from salon._exceptions import MatrixError

MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.audio", "m.video"})
_DEFAULT_NAMES = {"m.image": "image", "m.file": "file", "m.audio": "audio", "m.video": "video"}
_CHUNK = 1 << 16


class MediaError(MatrixError):
    """A media message's file cannot be had: malformed, refused, or corrupt."""


class MediaTooLargeError(MediaError):
    """The file is bigger than the configured cap (``size``: what was known of it)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the file has {size} bytes or more; the limit is {limit}")
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class EncryptedFile:
    """The keys of an encrypted attachment (``content.file``)."""

    key: bytes  # 32 bytes
    iv: bytes  # 16 bytes
    sha256: bytes  # of the ciphertext


@dataclass(frozen=True)
class MediaRef:
    """The file a media message names."""

    msgtype: str
    mxc: str
    name: str
    mime_type: str
    declared_size: int | None  # ``info.size``: a hint only, the download counts
    caption: str  # the text sent with the file ("" when the body is just its name)
    encrypted: EncryptedFile | None = None

    @property
    def server_and_id(self) -> tuple[str, str]:
        """``(server name, media id)`` of the ``mxc://`` URI."""
        rest = self.mxc.removeprefix("mxc://")
        server, _, media_id = rest.partition("/")
        return server, media_id


def parse_media(content: Mapping[str, Any]) -> MediaRef | None:
    """The file of a media message; None if ``content`` is no media message.
    A media message whose file cannot be named raises :class:`MediaError`."""
    msgtype = content.get("msgtype")
    if msgtype not in MEDIA_MSGTYPES:
        return None
    assert isinstance(msgtype, str)
    encrypted: EncryptedFile | None = None
    file = content.get("file")
    if isinstance(file, Mapping):
        url, encrypted = file.get("url"), encrypted_file(file)
    else:
        url = content.get("url")
    if not isinstance(url, str) or not _valid_mxc(url):
        raise MediaError(f"{msgtype} without a valid mxc:// URL")
    info = content.get("info") if isinstance(content.get("info"), Mapping) else {}
    assert isinstance(info, Mapping)
    body = content.get("body") if isinstance(content.get("body"), str) else ""
    filename = content.get("filename")
    # Spec (v1.10): with a ``filename`` that differs from ``body``, the body is a caption.
    if isinstance(filename, str) and filename and filename != body:
        name, caption = filename, str(body)
    else:
        name, caption = str(body), ""
    mime = info.get("mimetype")
    size = info.get("size")
    return MediaRef(
        msgtype=msgtype,
        mxc=url,
        name=safe_name(name) or _DEFAULT_NAMES[msgtype],
        mime_type=mime if isinstance(mime, str) and "/" in mime else "application/octet-stream",
        declared_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        caption=caption.strip(),
        encrypted=encrypted,
    )


def safe_name(name: str) -> str:
    """``name`` fit to be the last part of a path: no directories, no control
    characters, no leading dots, at most 120 characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '<>:"|?*').strip()
    return name.lstrip(".")[:120]


def encrypted_file(file: Mapping[str, Any]) -> EncryptedFile:
    """The keys of ``content.file`` (MediaError if they are not usable)."""
    key, hashes = file.get("key"), file.get("hashes")
    if not isinstance(key, Mapping) or key.get("alg", "A256CTR") != "A256CTR":
        raise MediaError("encrypted file: the key is not an A256CTR JWK")
    if not isinstance(hashes, Mapping) or not isinstance(hashes.get("sha256"), str):
        raise MediaError("encrypted file: no sha256 hash")
    try:
        raw_key = _unpadded_b64(key.get("k"), urlsafe=True)
        iv = _unpadded_b64(file.get("iv"))
        digest = _unpadded_b64(hashes["sha256"])
    except (binascii.Error, ValueError, TypeError) as e:
        raise MediaError(f"encrypted file: bad base64 ({e})") from e
    if len(raw_key) != 32 or len(iv) != 16 or len(digest) != 32:
        raise MediaError("encrypted file: key, iv or hash of the wrong length")
    return EncryptedFile(raw_key, iv, digest)


def decrypt_file(source: Path, dest: Path, keys: EncryptedFile) -> None:
    """Check ``source``'s SHA-256 against ``keys``, then decrypt it into ``dest``
    (blocking: run it in a thread). MediaError when the hash does not match."""
    digest = hashlib.sha256()
    with source.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    if digest.digest() != keys.sha256:
        raise MediaError("encrypted file: the SHA-256 of the download does not match")
    decryptor = Cipher(algorithms.AES(keys.key), modes.CTR(keys.iv)).decryptor()
    with source.open("rb") as f, dest.open("wb") as out:
        while chunk := f.read(_CHUNK):
            out.write(decryptor.update(chunk))
        out.write(decryptor.finalize())


def _valid_mxc(url: str) -> bool:
    server, _, media_id = url.removeprefix("mxc://").partition("/")
    return (
        url.startswith("mxc://")
        and bool(server and media_id)
        and "/" not in media_id
        and all(c.isalnum() or c in "_-" for c in media_id)
    )


def _unpadded_b64(value: object, *, urlsafe: bool = False) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a string")
    padded = value + "=" * (-len(value) % 4)
    return base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded)
