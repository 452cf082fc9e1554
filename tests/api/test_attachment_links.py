"""Short-lived links to attachments: the file for a genuine token (no bearer token
needed), a 403 with a stable code for a tampered, expired or escaping one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.rig import ApiRig, api_client

from salon.agents.attachments import Attachment
from salon.api.attachment_links import AttachmentLinker

Client = TestClient[Any, Any]


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[AttachmentLinker, Client, Attachment]]:
    root = tmp_path / "agents"
    stored = root / "echo" / "attachments" / "s" / "ev-résumé.pdf"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"%PDF-1.4 hello")
    linker = AttachmentLinker(root, ttl_s=60)
    rig = await ApiRig.start(tmp_path / "rig")
    client = await api_client(replace(rig.ctx, links=linker))
    linker.base_url = str(client.make_url("/")).rstrip("/")
    try:
        yield linker, client, Attachment("résumé.pdf", "application/pdf", 14, stored)
    finally:
        await client.close()
        await rig.store.close()


async def test_a_link_serves_the_file_without_the_bearer_token(
    linked: tuple[AttachmentLinker, Client, Attachment],
) -> None:
    linker, client, attachment = linked
    url = linker.link(attachment)
    assert url is not None and url.startswith(linker.base_url or "-")
    response = await client.get(url.removeprefix(linker.base_url or ""))
    assert response.status == 200
    assert await response.read() == b"%PDF-1.4 hello"
    assert response.headers["Content-Type"] == "application/pdf"
    assert "r%C3%A9sum%C3%A9.pdf" in response.headers["Content-Disposition"]


async def test_tampered_expired_and_escaping_links_are_refused(
    linked: tuple[AttachmentLinker, Client, Attachment], tmp_path: Path
) -> None:
    linker, client, attachment = linked
    url = linker.link(attachment)
    assert url is not None
    token = url.rsplit("/", 1)[1]
    body, _, signature = token.partition(".")
    (tmp_path / "secret.txt").write_text("no")  # beside the agents' homes, not in them
    forged = linker.token({"p": "../secret.txt", "n": "x", "m": "text/plain", "e": 2**40})
    stale = linker.token(
        {"p": "echo/attachments/s/ev-résumé.pdf", "n": "x", "m": "x/y", "e": int(time.time()) - 1}
    )
    other_key = AttachmentLinker(linker.root).token({"p": "echo", "n": "x", "m": "x/y", "e": 2**40})
    for bad in (f"{body}.{signature[:-2]}AA", forged, stale, other_key, "garbage"):
        response = await client.get(f"/v1/attachments/{bad}")
        assert response.status == 403, bad
        assert (await response.json())["error"]["code"] == "link_invalid"
    # A file outside the agents' homes never gets a link.
    outside = Attachment("secret.txt", "text/plain", 2, tmp_path / "secret.txt")
    assert linker.link(outside) is None
    assert AttachmentLinker(linker.root).link(attachment) is None  # no server: no link
