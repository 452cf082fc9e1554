"""Short-lived links to the files people sent, for ``http`` backends.

A file too big to send inline goes to an ``http`` backend as
``<api url>/v1/attachments/<token>``. The token is the file (its path under the
agents' home dirs, name and mime type) and an expiry, signed with HMAC-SHA256
under a key this process draws at start: whoever holds the link may fetch that
one file until it expires, and nothing else. The route needs no bearer token
(the link is the credential) but still an allowed ``Host``. A link is served
by the process that made it (another process of a cluster does not know its
key); after a restart, old links no longer work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from salon.agents.attachments import Attachment

PREFIX = "/v1/attachments/"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkedFile:
    """What a valid token names."""

    path: Path
    name: str
    mime_type: str


@dataclass
class AttachmentLinker:
    """Makes and checks links to files under ``root`` (the agents' home dirs).
    ``base_url`` is the API server's, set once it listens (None: no links)."""

    root: Path
    ttl_s: float = 600.0
    base_url: str | None = None
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def link(self, attachment: Attachment) -> str | None:
        """The URL of ``attachment`` (None without a server, or outside ``root``)."""
        if self.base_url is None:
            return None
        try:
            rel = attachment.path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return None
        expiry = int(time.time() + self.ttl_s)
        payload = {"p": str(rel), "n": attachment.name, "m": attachment.mime_type, "e": expiry}
        return f"{self.base_url.rstrip('/')}{PREFIX}{self.token(payload)}"

    def token(self, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())

    def check(self, token: str, now: float | None = None) -> LinkedFile | None:
        """The file ``token`` names, if it is genuine, unexpired and still there."""
        body, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        try:
            payload = json.loads(_unb64(body))
            expiry, rel = int(payload["e"]), str(payload["p"])
            name, mime = str(payload["n"]), str(payload["m"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        if expiry < (time.time() if now is None else now):
            return None
        root = self.root.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return LinkedFile(path, name, mime)


LINKS = web.AppKey("salon_attachment_links", AttachmentLinker)


async def serve_link(request: web.Request) -> web.StreamResponse:
    """``GET /v1/attachments/<token>``: the file, or 403 ``link_invalid``."""
    from salon.api.server import ApiError

    linker = request.app.get(LINKS)
    found = linker.check(request.match_info["token"]) if linker is not None else None
    if found is None:
        raise ApiError("link_invalid")
    headers = {
        "Content-Type": found.mime_type,
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }
    return web.FileResponse(found.path, headers=headers)


def add_routes(app: web.Application) -> None:
    """The link route."""
    app.router.add_get(PREFIX + "{token}", serve_link)
