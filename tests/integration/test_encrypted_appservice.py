"""Encrypted rooms in appservice mode, against a Synapse with the appservice
extensions on (MSC2409 to-device, MSC3202, MSC4190), with matrix-nio (vodozemac)
as the person: each agent gets its own device, made through the appservice token,
reads and answers in an encrypted DM, and keeps that device across a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from nio import AsyncClient, AsyncClientConfig

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig

from ..conftest import TestHomeserver, register_user
from .test_appservice import SECRETS, as_setup
from .test_encrypted_dm import NioPerson, open_dm

__all__ = ["as_setup"]  # the fixture, used here


@pytest.fixture
async def as_person(
    as_setup: tuple[TestHomeserver, SalonConfig], tmp_path: Path
) -> AsyncIterator[NioPerson]:
    hs, _ = as_setup
    creds = await register_user(hs)
    store = tmp_path / "nio"
    store.mkdir()
    client = AsyncClient(
        hs.base_url,
        creds.user_id,
        device_id=creds.device_id,
        store_path=str(store),
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
    )
    client.restore_login(creds.user_id, creds.device_id, creds.access_token)
    person = NioPerson(client)
    await person.sync()
    try:
        yield person
    finally:
        await client.close()


def _answered(person: NioPerson, agent: str, text: str) -> Callable[[], bool]:
    return lambda: any(text in e.body for e in person.replies_from(agent))


async def test_an_encrypted_dm_with_an_appservice_agent_across_a_restart(
    as_setup: tuple[TestHomeserver, SalonConfig],
    gateways: Callable[..., Awaitable[Gateway]],
    as_person: NioPerson,
) -> None:
    hs, config = as_setup
    gateway = await gateways(config, secrets=SECRETS)
    echo = str(config.agent_user_id("echo", hs.server_name))
    room_id = await open_dm(as_person, echo)

    await as_person.say(room_id, "hello to the appservice")
    await as_person.until(_answered(as_person, echo, "hello to the appservice"), "a reply")
    reply = next(e for e in as_person.replies_from(echo) if "hello to" in e.body)
    assert reply.decrypted  # it came encrypted, and nio opened it
    store = gateway.store
    assert store is not None
    account = await store.crypto.account(echo)
    assert account is not None
    device = account[0]
    # The agent's own device, made through the appservice: no login, no token kept.
    known = as_person.client.device_store.active_user_devices(echo)
    assert [d.device_id for d in known] == [device]
    db = Path(config.store.sqlite_path)
    with sqlite3.connect(db) as conn:
        tokens = conn.execute("SELECT count(*) FROM identities WHERE access_token IS NOT NULL")
        assert tokens.fetchone()[0] == 0

    await gateway.stop()
    again = await gateways(config, secrets=SECRETS)
    assert again.store is not None
    assert (await again.store.crypto.account(echo) or ("",))[0] == device
    await as_person.say(room_id, "still there after the restart?")
    await as_person.until(_answered(as_person, echo, "still there after"), "a reply after restart")
    known = as_person.client.device_store.active_user_devices(echo)
    assert [d.device_id for d in known] == [device]  # the same one device, no second
