"""Encrypted rooms beyond the DM, in both homeserver modes (the `deployment`
fixture), with matrix-nio (vodozemac) as the person: an agent invited into an
encrypted room that already had members and messages answers there; a delegation
between agents whose rooms are encrypted completes (its typed events encrypted,
and validated once opened); an encrypted image reaches a python backend whole."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from nio import AsyncClient, AsyncClientConfig

from salon.app.gateway import Gateway
from salon.coordination.protocol import REQUEST

from ..conftest import TestHomeserver, register_user
from . import plugins
from .modes import Deployment
from .nio_person import ENCRYPTED, NioPerson
from .test_delegation import _inbox_reason, _request

PLUGINS = "tests.integration.plugins"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@asynccontextmanager
async def nio_on(hs: TestHomeserver, store: Path) -> AsyncIterator[NioPerson]:
    """A fresh person on ``hs`` at an encrypting client, its keys kept in ``store``."""
    creds = await register_user(hs)
    await asyncio.to_thread(store.mkdir, parents=True)
    client = AsyncClient(
        hs.base_url,
        creds.user_id,
        device_id=creds.device_id,
        store_path=str(store),
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
    )
    client.restore_login(creds.user_id, creds.device_id, creds.access_token)
    person = NioPerson(client)
    try:
        await person.sync()
        yield person
    finally:
        await client.close()


def _member(person: NioPerson, room_id: str, user: str) -> Callable[[], bool]:
    def joined() -> bool:
        room = person.client.rooms.get(room_id)
        return room is not None and user in room.users

    return joined


def _said(person: NioPerson, sender: str, text: str) -> Callable[[], bool]:
    return lambda: any(text in e.body for e in person.replies_from(sender))


async def _join(person: NioPerson, alias: str) -> str:
    joined = await person.client.join(alias)
    room_id = str(getattr(joined, "room_id", ""))
    assert room_id, joined
    await person.until(lambda: room_id in person.client.rooms, f"the join of {alias}")
    return room_id


async def _raw_types(person: NioPerson, room_id: str, sender: str) -> list[str]:
    """The types of ``sender``'s events in ``room_id`` as the homeserver holds them."""
    path = f"{person.client.homeserver}/_matrix/client/v3/rooms/{room_id}/messages"
    headers = {"Authorization": f"Bearer {person.client.access_token}"}
    params = {"dir": "b", "limit": "100"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(path, headers=headers, params=params) as response,
    ):
        assert response.status == 200, await response.text()
        chunk = (await response.json())["chunk"]
    return [e["type"] for e in chunk if e["sender"] == sender and "state_key" not in e]


async def test_an_agent_invited_into_an_existing_encrypted_room_answers_there(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    config = deployment.config()
    await gateways(config, secrets=deployment.secrets)
    hs = deployment.hs
    echo = str(config.agent_user_id("echo", hs.server_name))
    friend = await deployment.person(http)
    async with nio_on(hs, tmp_path / "nio") as person:
        created = await person.client.room_create(
            name="planning", invite=[friend.user_id], initial_state=[ENCRYPTED]
        )
        room_id = str(created.room_id)
        await friend.join(room_id)
        await person.until(_member(person, room_id, friend.user_id), "the friend's join")
        for text in ("agenda first", "then the budget"):
            await person.say(room_id, text)  # history the agent will never read
        await person.client.room_invite(room_id, echo)
        await person.until(_member(person, room_id, echo), "the agent to join the room")
        content = {
            "msgtype": "m.text",
            "body": "echo: are you with us?",
            "m.mentions": {"user_ids": [echo]},
        }
        await person.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        await person.until(_said(person, echo, "are you with us?"), "the agent's answer")
        reply = next(e for e in person.replies_from(echo) if "are you with us?" in e.body)
        assert reply.decrypted  # it answered encrypted, and nio opened it
        assert "agenda first" not in reply.body  # it answered the question, not history


async def test_a_delegation_between_agents_in_encrypted_rooms_completes(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    tmp_path: Path,
) -> None:
    agents = {
        "alpha": {
            "backend": {
                "type": "python",
                "entry": f"{PLUGINS}:delegating",
                "options": {"to": "beta"},
            }
        },
        "beta": {"backend": {"type": "echo", "prefix": "beta says "}},
    }
    config = deployment.config(agents=agents, encryption={"rooms": "all"})
    hs = deployment.hs
    server = hs.server_name
    async with nio_on(hs, tmp_path / "nio") as person:
        gateway = await gateways(config, invite=[person.client.user_id], secrets=deployment.secrets)
        alpha_room = await _join(person, f"#{config.agent_room_alias_localpart('alpha')}:{server}")
        beta_room = await _join(person, f"#{config.agent_room_alias_localpart('beta')}:{server}")
        assert person.client.rooms[alpha_room].encrypted
        assert person.client.rooms[beta_room].encrypted
        alpha = str(config.agent_user_id("alpha", server))
        beta = str(config.agent_user_id("beta", server))
        await person.until(_member(person, alpha_room, alpha), "alpha in its room")
        await person.say(alpha_room, "hello")
        await person.until(
            _said(person, alpha, "alpha got: beta says task: hello"), "the delegated answer", 60
        )
        # The request went into beta's room encrypted, from alpha's own user; beta's
        # status answers too: no typed event in clear in an encrypted room.
        assert any("alpha → beta" in e.body for e in person.texts)  # the notice, decrypted
        alpha_types = await _raw_types(person, beta_room, alpha)
        beta_types = await _raw_types(person, beta_room, beta)
        assert alpha_types and set(alpha_types) == {"m.room.encrypted"}, alpha_types
        assert beta_types and set(beta_types) == {"m.room.encrypted"}, beta_types
        assert REQUEST not in alpha_types

        # Typed events are checked once opened: a request the person encrypts and
        # sends in alpha's name is dropped as forged, and beta answers nobody.
        forged = await person.client.room_send(
            beta_room,
            REQUEST,
            _request("dlg_forged_in_secret"),
            ignore_unverified_devices=True,
        )
        event_id = str(getattr(forged, "event_id", ""))
        assert event_id, forged
        assert await _inbox_reason(gateway, event_id) == "delegation forged"


async def test_an_encrypted_image_reaches_a_python_backend_whole(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    tmp_path: Path,
) -> None:
    entry = {"type": "python", "entry": f"{PLUGINS}:recorder"}
    config = deployment.config(data_dir=str(tmp_path / "data"), agents={"echo": {"backend": entry}})
    hs = deployment.hs
    echo = str(config.agent_user_id("echo", hs.server_name))
    await gateways(config, secrets=deployment.secrets)
    async with nio_on(hs, tmp_path / "nio") as person:
        created = await person.client.room_create(
            is_direct=True, invite=[echo], initial_state=[ENCRYPTED]
        )
        room_id = str(created.room_id)
        await person.until(_member(person, room_id, echo), "the agent to join the DM")
        uploaded, keys = await person.client.upload(
            lambda *_: PNG,
            content_type="application/octet-stream",
            encrypt=True,
            filesize=len(PNG),
        )
        assert keys is not None, uploaded
        content = {
            "msgtype": "m.image",
            "body": "dot.png",
            "info": {"mimetype": "image/png", "size": len(PNG), "w": 1, "h": 1},
            "file": {"url": uploaded.content_uri, **keys},
        }
        await person.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        await person.until(_said(person, echo, "recorded 1 file(s)"), "the recorder's answer")
    (request,) = plugins.RECORDED.pop(config.agents["echo"].id)
    (image,) = request.attachments
    assert (image.name, image.mime_type, image.size) == ("dot.png", "image/png", len(PNG))
    assert image.read() == PNG  # decrypted, checked, whole
