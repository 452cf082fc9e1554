"""Encrypted rooms in appservice mode, against a Synapse with the appservice
extensions on (MSC2409 to-device, MSC3202, MSC4190), with matrix-nio (vodozemac)
as the person: each agent gets its own device, made through the appservice token,
reads and answers in an encrypted DM, and keeps that device across a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from nio import AsyncClient, AsyncClientConfig

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.devserver.appservice import write_registration
from salon.devserver.synapse import free_port

from ..conftest import TestHomeserver, register_user
from .modes import SECRETS, TOKENS, appservice_config
from .test_appservice import as_setup
from .test_crash import running
from .test_encrypted_dm import NioPerson, failures, open_dm

__all__ = ["as_setup"]  # the fixture, used here


@pytest.fixture
def bare_as_setup(
    tmp_path: Path, synapse_factory: Callable[..., TestHomeserver]
) -> tuple[TestHomeserver, SalonConfig]:
    """As ``as_setup``, on a Synapse without the experimental appservice extensions
    (no to-device messages or key counts in transactions), and a short key wait."""
    port = free_port()
    placeholder = SimpleNamespace(base_url="http://127.0.0.1:9", server_name="localhost")
    draft = appservice_config(
        tmp_path,
        port,
        SimpleNamespace(**vars(placeholder), shared_secret=""),
        encryption={"undecryptable_wait_s": 1},
    )
    registration = tmp_path / "registration.yaml"
    write_registration(draft, registration, tmp_path / "registration.env", TOKENS)
    # Merged over the written config: the experimental features, all off.
    hs = synapse_factory(
        app_service_config_files=(registration,),
        rate_limit_overrides={"experimental_features": {}},
    )
    data = draft.model_dump(mode="json", exclude_none=True)
    data["homeserver"]["url"] = hs.base_url
    return hs, SalonConfig.model_validate(data)


async def _nio_person(hs: TestHomeserver, tmp_path: Path) -> AsyncClient:
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
    return client


@pytest.fixture
async def as_person(
    as_setup: tuple[TestHomeserver, SalonConfig], tmp_path: Path
) -> AsyncIterator[NioPerson]:
    client = await _nio_person(as_setup[0], tmp_path)
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


async def test_without_the_extensions_an_agent_drops_and_counts_what_it_cannot_read(
    bare_as_setup: tuple[TestHomeserver, SalonConfig],
    gateways: Callable[..., Awaitable[Gateway]],
    tmp_path: Path,
) -> None:
    hs, config = bare_as_setup
    person = NioPerson(await _nio_person(hs, tmp_path))
    try:
        gateway = await gateways(config, secrets=SECRETS)
        echo = str(config.agent_user_id("echo", hs.server_name))
        room_id = await open_dm(person, echo)
        before = failures(echo)
        # The room key goes to the agent's device, but the homeserver never passes it on.
        await person.say(room_id, "can you read this?")
        deadline = time.monotonic() + 30
        while failures(echo) < before + 1:
            assert time.monotonic() < deadline, "the unreadable event was never given up on"
            await asyncio.sleep(0.2)
        assert gateway.store is not None
        assert await gateway.store.crypto.pending_count(echo) == 0
        assert failures(echo) == before + 1  # one drop, one count: no loop
    finally:
        await person.client.close()


@pytest.mark.subprocess
async def test_after_kill_9_the_agent_reads_with_the_same_device(
    as_setup: tuple[TestHomeserver, SalonConfig],
    as_person: NioPerson,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hs, config = as_setup
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    echo = str(config.agent_user_id("echo", hs.server_name))
    with running(path) as first:
        first.wait_ready()
        room_id = await open_dm(as_person, echo)
        await as_person.say(room_id, "before the kill")
        await as_person.until(_answered(as_person, echo, "before the kill"), "a reply")
        first.kill()
    before = [d.device_id for d in as_person.client.device_store.active_user_devices(echo)]
    assert len(before) == 1
    with running(path) as second:
        second.wait_ready()
        await as_person.say(room_id, "after the kill")
        await as_person.until(_answered(as_person, echo, "after the kill"), "a reply after")
    after = [d.device_id for d in as_person.client.device_store.active_user_devices(echo)]
    assert after == before  # the same one device, no second


async def test_the_homeserver_never_finds_the_listener_down_at_start(
    as_setup: tuple[TestHomeserver, SalonConfig],
    gateways: Callable[..., Awaitable[Gateway]],
) -> None:
    """Registering the agents and publishing their keys makes Synapse push at once; a
    push refused marks the appservice down, and Synapse then drops every to-device
    message (room keys) until it has sent again each transaction it kept."""
    hs, config = as_setup
    await gateways(config, secrets=SECRETS)
    log = hs.layout.log_file.read_text()
    refused = [line for line in log.splitlines() if "push_bulk" in line]
    assert refused == []
