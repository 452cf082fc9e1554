"""Download a media message's file to disk, whole or not at all.

Through the authenticated media API (``/_matrix/client/v1/media/download``,
Matrix 1.11; Synapse requires it for new media since 1.120), falling back to
the old unauthenticated ``/_matrix/media/v3/download`` only when the server does
not know the new endpoint. The body is streamed to a temporary name beside the
target and counted; past ``max_bytes`` it stops and the temporary file goes. An
encrypted file is checked and decrypted (:func:`~salon.matrix.media.decrypt_file`)
before the final ``rename``, so the target name only ever holds a whole file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from pathlib import Path
from urllib.parse import quote

import aiohttp
import structlog

from salon._exceptions import (
    ForbiddenError,
    MatrixConnectionError,
    MatrixRequestError,
    NotFoundError,
)
from salon.matrix.api import MatrixAPI
from salon.matrix.media import MediaRef, MediaTooLargeError, decrypt_file

log = structlog.get_logger("salon.matrix.download")

AUTHENTICATED = "/_matrix/client/v1/media/download"
LEGACY = "/_matrix/media/v3/download"
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_read=60)
_CHUNK = 1 << 16


async def download_media(api: MatrixAPI, ref: MediaRef, dest: Path, max_bytes: int) -> int:
    """Store ``ref``'s file (decrypted) at ``dest``; return its size in bytes.

    Raises :class:`MediaTooLargeError` over ``max_bytes`` (nothing is left on
    disk), Salon's Matrix errors for a refusal or an outage, and
    :class:`~salon.matrix.media.MediaError` for a corrupt encrypted file.
    """
    if ref.declared_size is not None and ref.declared_size > max_bytes:
        raise MediaTooLargeError(ref.declared_size, max_bytes)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    plain = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.plain")
    try:
        size = await _fetch(api, ref, part, max_bytes)
        if ref.encrypted is not None:
            await asyncio.to_thread(decrypt_file, part, plain, ref.encrypted)
            os.replace(plain, dest)
        else:
            os.replace(part, dest)
        return size
    finally:
        for leftover in (part, plain):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


async def _fetch(api: MatrixAPI, ref: MediaRef, part: Path, max_bytes: int) -> int:
    server, media_id = ref.server_and_id
    tail = f"/{quote(server, safe='')}/{quote(media_id, safe='')}"
    try:
        return await _get(api, AUTHENTICATED + tail, part, max_bytes)
    except _Unrecognised:
        log.info("media.legacy_download", mxc=ref.mxc)
        try:
            return await _get(api, LEGACY + tail, part, max_bytes)
        except _Unrecognised as e:
            raise NotFoundError(f"media {ref.mxc}: not found", http_status=404) from e


class _Unrecognised(Exception):
    """The server does not know this endpoint."""


async def _get(api: MatrixAPI, path: str, part: Path, max_bytes: int) -> int:
    session, base, headers, query = api.raw_request_parts()
    url = base.rstrip("/") + path
    try:
        async with session.get(
            url, headers=headers, params=query, timeout=DOWNLOAD_TIMEOUT, allow_redirects=True
        ) as response:
            if response.status != 200:
                await _refused(response)
            if (response.content_length or 0) > max_bytes:
                raise MediaTooLargeError(response.content_length or 0, max_bytes)
            size = 0
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaTooLargeError(size, max_bytes)
                    out.write(chunk)
            return size
    except (aiohttp.ClientError, TimeoutError) as e:
        raise MatrixConnectionError(f"media download failed: {type(e).__name__}: {e}") from e


async def _refused(response: aiohttp.ClientResponse) -> None:
    errcode = None
    with contextlib.suppress(ValueError, aiohttp.ClientError):
        body = await response.json(content_type=None)
        errcode = body.get("errcode") if isinstance(body, dict) else None
    status = response.status
    if errcode == "M_UNRECOGNIZED" or (status in (404, 405) and errcode is None):
        raise _Unrecognised()
    text = f"media download answered {status} {errcode or ''}".strip()
    if status == 404:
        raise NotFoundError(text, http_status=status, errcode=errcode)
    if status == 403:
        raise ForbiddenError(text, http_status=status, errcode=errcode)
    if status == 429:
        # Rare for media; a later try of the whole event waits it out.
        raise MatrixConnectionError(text)
    raise MatrixRequestError(text, http_status=status, errcode=errcode)
