"""Integration fixtures: gateways on the session Synapse, and people talking to them.

Each test gets its own namespace of localparts and aliases, so tests share one
homeserver without seeing each other's rooms.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mautrix.api import HTTPAPI, Method
from mautrix.api import Path as MxPath
from mautrix.client import ClientAPI
from mautrix.types import RoomAlias, RoomID, UserID

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.matrix.registration import Credentials

from .nio_person import nio_person  # noqa: F401  (a fixture: an encrypting person)


class Person:
    """A human at a Matrix client (mautrix's plain ClientAPI, not Salon's code)."""

    def __init__(self, creds: Credentials, base_url: str, session: aiohttp.ClientSession):
        self.user_id = creds.user_id
        self.api = ClientAPI(
            UserID(creds.user_id),
            api=HTTPAPI(base_url, creds.access_token, client_session=session),
        )

    async def join(self, alias_or_id: str) -> str:
        """Join a room (accepting an invitation if there is one)."""
        if alias_or_id.startswith("#"):
            return str(await self.api.join_room(RoomAlias(alias_or_id), max_retries=0))
        return str(await self.api.join_room(RoomID(alias_or_id), max_retries=0))

    async def say(self, room_id: str, text: str, **extra: Any) -> str:
        """Send a text message; returns its event id."""
        content = {"msgtype": "m.text", "body": text, **extra}
        path = MxPath.v3.rooms[room_id].send["m.room.message"][uuid.uuid4().hex]
        data = await self.api.api.request(Method.PUT, path, content)
        return str(data["event_id"])

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """Annotate an event with a reaction."""
        path = MxPath.v3.rooms[room_id].send["m.reaction"][uuid.uuid4().hex]
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        data = await self.api.api.request(Method.PUT, path, content)
        return str(data["event_id"])

    async def history(self, room_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """Raw timeline events, oldest first."""
        data = await self.api.api.request(
            Method.GET,
            MxPath.v3.rooms[room_id].messages,
            query_params={"dir": "b", "limit": str(limit)},
        )
        return list(reversed(data.get("chunk") or []))

    async def state(self, room_id: str) -> list[dict[str, Any]]:
        """The room's current state events."""
        return list(await self.api.api.request(Method.GET, MxPath.v3.rooms[room_id].state))

    async def replies_to(self, room_id: str, event_id: str) -> list[dict[str, Any]]:
        """Messages that reply to ``event_id`` (edits excluded)."""
        found = []
        for event in await self.history(room_id):
            content = event.get("content") or {}
            rel = content.get("m.relates_to") or {}
            if rel.get("rel_type") == "m.replace":
                continue
            if (rel.get("m.in_reply_to") or {}).get("event_id") == event_id:
                found.append(event)
        return found

    async def wait_reply(
        self, room_id: str, event_id: str, timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first reply to ``event_id``; fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = await self.replies_to(room_id, event_id)
            if replies:
                return replies[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"no reply to {event_id} within {timeout} s")


def salon_config(synapse: Any, tmp_path: Path, **overrides: Any) -> SalonConfig:
    """A config on the session Synapse, in a namespace of its own."""
    ns = secrets.token_hex(3)
    data: dict[str, Any] = {
        "homeserver": {
            "url": synapse.base_url,
            "server_name": synapse.server_name,
            "registration_shared_secret": synapse.shared_secret,
        },
        "space": {"alias": f"salon-{ns}", "name": f"Salon {ns}"},
        "router": {"localpart": f"salon-{ns}"},
        "naming": {
            "agent_localpart": f"salon-{ns}_{{id}}",
            "agent_room_alias": f"salon-{ns}-{{id}}",
            "lobby_alias": f"salon-{ns}-lobby",
        },
        "agents": {
            "echo": {"label": "Echo", "backend": {"type": "echo", "fail_on": "FAIL"}},
            "parrot": {"label": "Parrot", "backend": {"type": "echo", "prefix": "🦜 "}},
        },
        "sync": {"startup_jitter_s": 0, "backoff_initial_s": 0.2, "backoff_max_s": 1},
        "store": {"url": f"sqlite:///{tmp_path / 'salon.db'}"},
        # The tests' people are plain users of the test server; access is closed to
        # all but the admins unless opened, so it is opened here, explicitly.
        "access": {"allowed_users": [f"@*:{synapse.server_name}"]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return SalonConfig.model_validate(data)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session for the test's Matrix clients."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def person(
    new_user: Callable[..., Awaitable[Credentials]], synapse: Any, http: aiohttp.ClientSession
) -> Person:
    """A fresh human user."""
    return Person(await new_user(), synapse.base_url, http)


@pytest.fixture
async def gateways() -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """Start gateways for a test; each is stopped at the end (if still running)."""
    started: list[Gateway] = []

    async def start(config: SalonConfig, **kwargs: Any) -> Gateway:
        gateway = Gateway(config, **kwargs)
        started.append(gateway)
        await gateway.start()
        return gateway

    yield start
    for gateway in started:
        if gateway.state is not None:
            await gateway.stop()


@pytest.fixture(params=["client", "appservice"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The test once per homeserver mode (see ``modes.py``): the same scenario must
    hold in both."""
    from .modes import appservice_deployment, client_deployment

    if request.param == "client":
        return client_deployment(tmp_path, request.getfixturevalue("synapse"))
    return appservice_deployment(tmp_path, request.getfixturevalue("synapse_factory"))
