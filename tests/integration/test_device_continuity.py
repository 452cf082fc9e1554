"""A re-login keeps the device, so a resent reply is deduplicated by the homeserver.

Synapse scopes transaction-id dedupe per device. If a re-login made a new device,
a reply resent after it with the same transaction id would be posted twice.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.login import Authenticator, CredentialSource
from salon.matrix.registration import register_with_shared_secret
from salon.store import Store

if TYPE_CHECKING:
    from conftest import TestHomeserver


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _raw(
    http: aiohttp.ClientSession, method: str, url: str, token: str
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, headers=headers, json={}) as resp:
        return resp.status, await resp.json()


async def _device_of(http: aiohttp.ClientSession, base_url: str, token: str) -> str:
    status, body = await _raw(http, "GET", f"{base_url}/_matrix/client/v3/account/whoami", token)
    assert status == 200, body
    return str(body["device_id"])


async def _bodies(api: MatrixAPI, room_id: RoomId) -> list[str]:
    page = await api.messages(room_id, limit=50)
    return [
        e["content"].get("body", "")
        for e in page.get("chunk") or []
        if e.get("type") == "m.room.message"
    ]


@pytest.mark.parametrize("how", ["shared_secret", "password"])
async def test_reauth_keeps_the_device_and_txn_dedupe(
    synapse: TestHomeserver, tmp_path: Path, http: aiohttp.ClientSession, how: str
) -> None:
    localpart = f"dev-{secrets.token_hex(5)}"
    user_id = UserId(f"@{localpart}:{synapse.server_name}")
    if how == "password":
        password = secrets.token_urlsafe(12)
        await register_with_shared_secret(
            http, synapse.base_url, synapse.shared_secret, localpart, password
        )
        source = CredentialSource(password=password)
    else:
        source = CredentialSource(shared_secret=synapse.shared_secret)
    store = await Store.open(f"sqlite:///{tmp_path / 'salon.db'}")
    try:
        auth = Authenticator(synapse.base_url, synapse.server_name, http, store.identities)
        api = await auth.login(user_id, source)
        room_id = await api.create_room(name="continuity")
        device = await _device_of(http, synapse.base_url, api.access_token)
        content = {"msgtype": "m.text", "body": "the reply, once"}
        first = await api.send_event(room_id, "m.room.message", content, txn_id="reply-X")

        # The homeserver forgets the token (as after a logout elsewhere or a token
        # expiry); the device goes with it, and reauth must bring back the same id.
        old_token = api.access_token
        status, body = await _raw(
            http, "POST", f"{synapse.base_url}/_matrix/client/v3/logout", old_token
        )
        assert status == 200, body
        await auth.reauth(api)

        assert api.access_token != old_token
        assert await _device_of(http, synapse.base_url, api.access_token) == device
        assert (await store.identities.load_credentials(user_id))[0] == device
        again = await api.send_event(room_id, "m.room.message", content, txn_id="reply-X")
        assert again == first
        assert (await _bodies(api, room_id)).count("the reply, once") == 1
    finally:
        await store.close()
