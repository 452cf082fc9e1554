"""Upload a file an identity sends, encrypted when the room is.

Plain rooms get the file as is (``url``); in an encrypted room it is encrypted
first with AES-256-CTR under a fresh random key and IV, and the message carries
``file`` (the ``mxc://`` URI, the key as a JWK, the IV and the SHA-256 of the
ciphertext) instead of ``url``: the homeserver only ever holds ciphertext. The
message itself is then encrypted by :meth:`MatrixAPI.send_event`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from typing import Any

import aiohttp
import structlog
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from salon._exceptions import (
    ForbiddenError,
    MatrixConnectionError,
    MatrixRequestError,
    MatrixResponseError,
    NotFoundError,
)
from salon.ids import RoomId
from salon.matrix.api import JSON, MatrixAPI

log = structlog.get_logger("salon.matrix.upload")

UPLOAD = "/_matrix/media/v3/upload"
UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_read=60)


def msgtype_for(mime_type: str) -> str:
    """The message type a file of ``mime_type`` is sent as."""
    kind = mime_type.split("/", 1)[0].lower()
    return {"image": "m.image", "audio": "m.audio", "video": "m.video"}.get(kind, "m.file")


def encrypt_bytes(data: bytes) -> tuple[bytes, JSON]:
    """``data`` encrypted for an attachment, and its ``file`` keys (without ``url``)."""
    key = os.urandom(32)
    # 64 random bits, then a 64-bit block counter that starts at zero (the spec's form).
    iv = os.urandom(8) + b"\0" * 8
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(data) + encryptor.finalize()
    keys = {
        "v": "v2",
        "key": {
            "kty": "oct",
            "key_ops": ["encrypt", "decrypt"],
            "alg": "A256CTR",
            "k": base64.urlsafe_b64encode(key).decode().rstrip("="),
            "ext": True,
        },
        "iv": _b64(iv),
        "hashes": {"sha256": _b64(hashlib.sha256(ciphertext).digest())},
    }
    return ciphertext, keys


async def room_encrypted(api: MatrixAPI, room_id: RoomId) -> bool:
    """Whether ``room_id`` has end-to-end encryption turned on."""
    try:
        state = await api.get_state_event(room_id, "m.room.encryption")
    except NotFoundError:
        return False
    return bool(state and state.get("algorithm"))


async def upload_for_room(
    api: MatrixAPI, room_id: RoomId, data: bytes, mime_type: str, name: str
) -> JSON:
    """Upload ``data`` for a message in ``room_id``; returns the content's file part:
    ``{"url": mxc}``, or ``{"file": {...}}`` in an encrypted room."""
    if not await room_encrypted(api, room_id):
        return {"url": await upload_media(api, data, mime_type, name)}
    ciphertext, keys = encrypt_bytes(data)
    # The homeserver sees no name and no type of an encrypted file.
    mxc = await upload_media(api, ciphertext, "application/octet-stream", "")
    return {"file": {"url": mxc, **keys}}


async def upload_media(api: MatrixAPI, data: bytes, mime_type: str, name: str) -> str:
    """Upload ``data``; returns its ``mxc://`` URI. Raises Salon's Matrix errors."""
    session, base, headers, query = api.raw_request_parts()
    params: dict[str, Any] = {**query, **({"filename": name} if name else {})}
    try:
        async with session.post(
            base.rstrip("/") + UPLOAD,
            data=data,
            headers={**headers, "Content-Type": mime_type},
            params=params,
            timeout=UPLOAD_TIMEOUT,
        ) as response:
            body: Any = None
            with contextlib.suppress(ValueError, aiohttp.ClientError):
                body = await response.json(content_type=None)
            if response.status != 200:
                raise _refused(response.status, body)
    except (aiohttp.ClientError, TimeoutError) as e:
        raise MatrixConnectionError(f"media upload failed: {type(e).__name__}: {e}") from e
    uri = body.get("content_uri") if isinstance(body, dict) else None
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        raise MatrixResponseError("media upload: the answer has no content_uri")
    log.debug("media.uploaded", user=api.user_id, mxc=uri, size=len(data))
    return uri


def _refused(status: int, body: Any) -> Exception:
    errcode = body.get("errcode") if isinstance(body, dict) else None
    text = f"media upload answered {status} {errcode or ''}".strip()
    if status == 429:
        return MatrixConnectionError(text)  # waited out like an outage
    if status == 403:
        return ForbiddenError(text, http_status=status, errcode=errcode)
    return MatrixRequestError(text, http_status=status, errcode=errcode)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")
