"""Encrypted rooms in client mode, with an independent client that encrypts as the
person (matrix-nio with its vodozemac crypto): the agent reads and answers, keeps
its device across a restart, and drops (and counts) what it can never decrypt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import vodozemac
from nio import AsyncClient, AsyncClientConfig, MegolmEvent, RoomMessageText

from salon.app.gateway import Gateway
from salon.metrics import DECRYPTION_FAILURES

from .conftest import salon_config

ENCRYPTED = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


class NioPerson:
    """A person at an encrypting client: nio keeps its own keys in ``store``."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.texts: list[RoomMessageText] = []
        self.undecrypted: list[MegolmEvent] = []

    async def sync(self) -> None:
        client = self.client
        response = await client.sync(timeout=500)
        for room in getattr(response, "rooms", None).join.values():
            for event in room.timeline.events:
                if isinstance(event, RoomMessageText):
                    self.texts.append(event)
                elif isinstance(event, MegolmEvent):
                    self.undecrypted.append(event)
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    async def until(self, done: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await self.sync()

    async def say(self, room_id: str, text: str) -> None:
        await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": text},
            ignore_unverified_devices=True,
        )

    def replies_from(self, sender: str) -> list[RoomMessageText]:
        return [e for e in self.texts if e.sender == sender]


@pytest.fixture
async def nio_person(
    new_user: Callable[..., Awaitable[Any]], synapse: Any, tmp_path: Path
) -> AsyncIterator[NioPerson]:
    creds = await new_user()
    store = tmp_path / "nio"
    store.mkdir()
    client = AsyncClient(
        synapse.base_url,
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


async def open_dm(person: NioPerson, agent: str) -> str:
    """An encrypted DM with ``agent``, once it has joined."""
    created = await person.client.room_create(
        is_direct=True, invite=[agent], initial_state=[ENCRYPTED]
    )
    room_id = str(created.room_id)

    def joined() -> bool:
        room = person.client.rooms.get(room_id)
        return room is not None and agent in room.users and room.encrypted

    await person.until(joined, f"{agent} to join the encrypted DM")
    return room_id


async def test_an_encrypted_dm_gets_a_decryptable_answer_across_a_restart(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
) -> None:
    config = salon_config(synapse, tmp_path, sync={"timeout_ms": 1000})
    gateway = await gateways(config)
    echo = str(config.agent_user_id("echo", synapse.server_name))
    room_id = await open_dm(nio_person, echo)

    await nio_person.say(room_id, "hello in secret")
    await nio_person.until(
        lambda: any("hello in secret" in e.body for e in nio_person.replies_from(echo)),
        "the echo agent's decryptable reply",
    )
    reply = next(e for e in nio_person.replies_from(echo) if "hello in secret" in e.body)
    assert reply.decrypted  # it came encrypted, and nio opened it
    store = gateway.store
    assert store is not None
    device, _ = await store.identities.load_credentials(echo)
    account = await store.crypto.account(echo)
    assert account is not None and account[0] == device
    assert "hello in secret" not in account[1]  # pickled, not in clear

    await gateway.stop()
    again = await gateways(config)
    store = again.store
    assert store is not None
    assert (await store.identities.load_credentials(echo))[0] == device
    assert (await store.crypto.account(echo) or ("",))[0] == device
    await nio_person.say(room_id, "still there?")
    await nio_person.until(
        lambda: any("still there?" in e.body for e in nio_person.replies_from(echo)),
        "a reply after the restart",
    )
    # The person's client still knows the agent by one device only.
    known = nio_person.client.device_store.active_user_devices(echo)
    assert [d.device_id for d in known] == [device]


def failures(identity: str) -> float:
    value = DECRYPTION_FAILURES.labels(identity=identity, reason="key_never_arrived")._value
    return float(value.get())


async def test_an_event_whose_key_never_arrives_is_dropped_and_counted(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
    http: aiohttp.ClientSession,
) -> None:
    config = salon_config(
        synapse, tmp_path, sync={"timeout_ms": 500}, encryption={"undecryptable_wait_s": 1}
    )
    gateway = await gateways(config)
    echo = str(config.agent_user_id("echo", synapse.server_name))
    room_id = await open_dm(nio_person, echo)
    store = gateway.store
    assert store is not None
    before = failures(echo)
    # A Megolm event whose session nobody ever shares: sent as ciphertext, raw.
    session = vodozemac.GroupSession()
    plaintext = b'{"type":"m.room.message","content":{"body":"lost"},"room_id":"%s"}' % (
        room_id.encode()
    )
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": "x" * 43,
        "ciphertext": session.encrypt(plaintext).to_base64(),
        "session_id": session.session_id,
        "device_id": "NOWHERE",
    }
    client = nio_person.client
    url = f"{synapse.base_url}/_matrix/client/v3/rooms/{room_id}/send/m.room.encrypted/lost1"
    headers = {"Authorization": f"Bearer {client.access_token}"}
    async with http.put(url, json=content, headers=headers) as response:
        assert response.status == 200, await response.text()
    deadline = time.monotonic() + 30
    while failures(echo) < before + 1:
        assert time.monotonic() < deadline, "the undecryptable event was never given up on"
        await asyncio.sleep(0.2)
    assert await store.crypto.pending_count(echo) == 0
    assert failures(echo) == before + 1  # one drop, one count: no retry loop


async def test_an_encrypted_file_in_an_encrypted_dm_reaches_the_agent(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
) -> None:
    """The whole way an Element user sends a file: encrypted event, encrypted media."""
    data_dir = tmp_path / "data"
    config = salon_config(synapse, tmp_path, sync={"timeout_ms": 1000}, data_dir=str(data_dir))
    await gateways(config)
    echo = str(config.agent_user_id("echo", synapse.server_name))
    room_id = await open_dm(nio_person, echo)
    data = b"minutes of the meeting\n" * 40
    uploaded, keys = await nio_person.client.upload(
        lambda *_: data,
        content_type="application/octet-stream",
        encrypt=True,
        filesize=len(data),
    )
    assert keys is not None, uploaded
    content = {
        "msgtype": "m.file",
        "body": "minutes.txt",
        "info": {"mimetype": "text/plain", "size": len(data)},
        "file": {"url": uploaded.content_uri, **keys},
    }
    await nio_person.client.room_send(
        room_id, "m.room.message", content, ignore_unverified_devices=True
    )
    line = f"[attachment: minutes.txt text/plain {len(data)} bytes]"
    await nio_person.until(
        lambda: any(line in e.body for e in nio_person.replies_from(echo)),
        "the echo agent's description of the encrypted file",
    )
    reply = next(e for e in nio_person.replies_from(echo) if line in e.body)
    assert reply.decrypted
    stored = list((data_dir / "agents" / "echo" / "attachments").rglob("*-minutes.txt"))
    assert [p.read_bytes() for p in stored] == [data]
