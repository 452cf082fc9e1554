"""A person at an encrypting client (matrix-nio with its vodozemac crypto), for the
tests of encrypted rooms: an independent implementation of Olm/Megolm."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    RoomEncryptedMedia,
    RoomMessageMedia,
    RoomMessageNotice,
    RoomMessageText,
)

ENCRYPTED = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


class NioPerson:
    """A person at an encrypting client: nio keeps its own keys in ``store``."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.texts: list[RoomMessageText | RoomMessageNotice] = []  # notices too
        self.undecrypted: list[MegolmEvent] = []
        self.files: list[RoomEncryptedMedia | RoomMessageMedia] = []

    async def sync(self) -> None:
        client = self.client
        response = await client.sync(timeout=500)
        for room in getattr(response, "rooms", None).join.values():
            for event in room.timeline.events:
                if isinstance(event, (RoomMessageText, RoomMessageNotice)):
                    self.texts.append(event)
                elif isinstance(event, RoomEncryptedMedia | RoomMessageMedia):
                    self.files.append(event)
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

    def replies_from(self, sender: str) -> list[RoomMessageText | RoomMessageNotice]:
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
