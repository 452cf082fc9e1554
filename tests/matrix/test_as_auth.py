"""Appservice identities: each user is registered once, remembered in the store, so a
restart of a thousand agents makes no /register call."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from salon.ids import UserId
from salon.matrix.as_auth import AppserviceAuthenticator, AppserviceIdentity
from salon.matrix.login import CredentialSource
from salon.store import Store

ROUTER = UserId("@salon:localhost")
AGENTS = [UserId(f"@salon_a{i}:localhost") for i in range(3)]


async def _authenticator(
    http: aiohttp.ClientSession, url: str, store: Store, as_token: str
) -> AppserviceAuthenticator:
    identity = AppserviceIdentity(as_token, ROUTER, store.appservice_users)
    return AppserviceAuthenticator(url, "localhost", http, store.identities, identity)


async def test_a_restart_registers_nobody_again(tmp_path: Path) -> None:
    registered: list[str] = []

    async def register(request: web.Request) -> web.Response:
        body = await request.json()
        registered.append(body["username"])
        if registered.count(body["username"]) > 1:  # exists: the homeserver says so
            return web.json_response({"errcode": "M_USER_IN_USE", "error": "taken"}, status=400)
        return web.json_response({"user_id": f"@{body['username']}:localhost"})

    app = web.Application()
    app.router.add_post("/_matrix/client/v3/register", register)
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        url = str(server.make_url("")).rstrip("/")
        first = await _authenticator(http, url, store, "as-one")
        for user in [ROUTER, *AGENTS]:
            api = await first.login(user, CredentialSource())
            assert api.user_id == user
        assert registered == ["salon_a0", "salon_a1", "salon_a2"]  # the sender exists

        registered.clear()
        warm = await _authenticator(http, url, store, "as-one")
        for user in [ROUTER, *AGENTS]:
            await warm.login(user, CredentialSource())
        assert registered == []

        # Another registration (a new homeserver, say): its users are made again.
        other = await _authenticator(http, url, store, "as-two")
        await other.login(AGENTS[0], CredentialSource())
        assert registered == ["salon_a0"]
    await store.close()
