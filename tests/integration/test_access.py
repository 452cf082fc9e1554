"""Access fails closed, on a real Synapse: by default only the admins reach the agents;
anyone else's message is dropped and their invitation declined, each with the reason
stored and counted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
from mautrix.types import UserID
from structlog.testing import capture_logs

from salon.app.gateway import Gateway, ReloadSource
from salon.config import load_config
from salon.config.models import AccessConfig, SalonConfig
from salon.metrics import EVENTS_DROPPED
from salon.store import Store
from salon.store.invites import InviteRecord, InviteState
from salon.store.kv import GATEWAY_STATUS_KEY
from salon.store.records import InboxRow, InboxState

from .conftest import Person, salon_config

T = TypeVar("T")


def dropped(reason: str) -> float:
    return EVENTS_DROPPED.labels(reason=reason)._value.get()


async def until(read: Callable[[], Awaitable[T | None]], done: Callable[[T], bool], what: str) -> T:
    """What ``read`` returns once ``done`` holds for it; fails the test after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        value = await read()
        if value is not None and done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def admins_only(synapse: Any, tmp_path: Path, admin: str) -> SalonConfig:
    """The test config with the default policy: no ``allowed_users``, one admin."""
    config = salon_config(synapse, tmp_path)
    return config.model_copy(update={"access": AccessConfig(admins=[admin])})


async def handled(store: Store, event_id: str) -> InboxRow:
    return await until(
        lambda: store.inbox.get(event_id), lambda r: r.state is not InboxState.NEW, event_id
    )


async def test_by_default_only_admins_are_answered(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
    new_user: Callable[..., Awaitable[Any]],
    http: aiohttp.ClientSession,
) -> None:
    stranger = Person(await new_user(), synapse.base_url, http)
    config = admins_only(synapse, tmp_path, person.user_id)
    assert config.access.allowed_users is None
    # Both are invited to the rooms: being in a room is not being allowed to use it.
    with capture_logs() as logs:
        gateway = await gateways(config, invite=[stranger.user_id])
    store = gateway.store
    assert store is not None
    said = [e for e in logs if e["event"] == "access.policy"]
    assert said == [
        {
            "event": "access.policy",
            "log_level": "info",
            "policy": f"admins only ({person.user_id})",
            "admins": [person.user_id],
            "allowed_users": [],
        }
    ]
    alias = f"#{config.agent_room_alias_localpart('echo')}:{synapse.server_name}"
    room_id = await person.join(alias)
    await stranger.join(alias)

    before = dropped("unauthorised")
    stranger_asked = await stranger.say(room_id, "let me in")
    row = await handled(store, stranger_asked)
    assert (row.state, row.reason) == (InboxState.DROPPED, "unauthorised")
    assert dropped("unauthorised") == before + 1

    admin_asked = await person.say(room_id, "hello, admin here")
    reply = await person.wait_reply(room_id, admin_asked)
    assert reply["content"]["body"] == "hello, admin here"
    assert await person.replies_to(room_id, stranger_asked) == []
    # `salon status` says who may reach the agents (from the status the gateway publishes).
    status = await until(
        lambda: store.kv.get(GATEWAY_STATUS_KEY),
        lambda raw: "access" in json.loads(raw),
        "the published status",
    )
    assert json.loads(status)["access"] == f"admins only ({person.user_id})"


async def test_a_strangers_invitation_is_declined(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
    new_user: Callable[..., Awaitable[Any]],
    http: aiohttp.ClientSession,
) -> None:
    stranger = Person(await new_user(), synapse.base_url, http)
    config = admins_only(synapse, tmp_path, person.user_id)
    gateway = await gateways(config)
    store = gateway.store
    assert store is not None
    echo = str(config.agent_user_id("echo", synapse.server_name))

    async def invite(by: Person) -> tuple[str, InviteRecord]:
        room_id = str(await by.api.create_room(invitees=[UserID(echo)]))
        record = await until(
            lambda: store.invites.get(echo, room_id),
            lambda r: r.state is not InviteState.PENDING,
            f"the invitation into {room_id}",
        )
        return room_id, record

    before = dropped("invite_unauthorised")
    trap, record = await invite(stranger)
    assert (record.state, record.reason) == (InviteState.REFUSED, "unauthorised")
    assert dropped("invite_unauthorised") == before + 1
    membership = {
        e["state_key"]: e["content"]["membership"]
        for e in await stranger.state(trap)
        if e["type"] == "m.room.member"
    }
    assert membership[echo] == "leave"  # declined: the invitation does not linger

    room_id, record = await invite(person)  # an admin's invitation is joined
    assert (record.state, record.reason) == (InviteState.JOINED, "joined")
    assert echo in await person.api.get_joined_members(room_id)


async def test_a_reload_opening_access_applies_to_invitations_and_messages(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
    new_user: Callable[..., Awaitable[Any]],
    http: aiohttp.ClientSession,
) -> None:
    stranger = Person(await new_user(), synapse.base_url, http)
    data = admins_only(synapse, tmp_path, person.user_id).model_dump(mode="json")
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data))
    gateway = await gateways(
        load_config(path), reload=ReloadSource(lambda: load_config(path), watch=path)
    )
    store = gateway.store
    assert store is not None
    echo = str(gateway.config.agent_user_id("echo", synapse.server_name))
    first = str(await stranger.api.create_room(invitees=[UserID(echo)]))
    refused = await until(
        lambda: store.invites.get(echo, first), lambda r: r.state is not InviteState.PENDING, first
    )
    assert refused.state is InviteState.REFUSED

    async def allowed_users() -> list[str] | None:
        return gateway.config.access.allowed_users

    data["access"]["allowed_users"] = [stranger.user_id]
    with capture_logs() as logs:
        path.write_text(yaml.safe_dump(data))
        await until(allowed_users, bool, "the reload")
    said = [e["policy"] for e in logs if e["event"] == "access.policy"]
    assert said == [f"admins ({person.user_id}) and {stranger.user_id}"]
    # The invitation joiner follows the running config, as messages do.
    room_id = str(await stranger.api.create_room(invitees=[UserID(echo)]))
    joined = await until(
        lambda: store.invites.get(echo, room_id),
        lambda r: r.state is not InviteState.PENDING,
        room_id,
    )
    assert joined.state is InviteState.JOINED
    asked = await stranger.say(room_id, "now may I?")
    assert (await stranger.wait_reply(room_id, asked))["content"]["body"] == "now may I?"
