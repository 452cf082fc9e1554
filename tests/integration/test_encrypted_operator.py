"""The operator's sends (admin API, `salon send`) into an encrypted room: encrypted
with the operator's own durable device, read by an encrypting person (matrix-nio)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from salon.app.gateway import Gateway
from salon.ids import RoomId, UserId
from salon.matrix.registration import Credentials

from .nio_person import NioPerson
from .test_admin_api import start_api_gateway

MEGOLM = {"algorithm": "m.megolm.v1.aes-sha2"}


async def test_the_api_posts_as_the_operator_encrypted(
    synapse: Any,
    tmp_path: Path,
    new_user: Callable[..., Awaitable[Credentials]],
    monkeypatch: pytest.MonkeyPatch,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
    nio_person: NioPerson,
) -> None:
    operator = await new_user()
    api = await start_api_gateway(synapse, tmp_path, operator, monkeypatch, gateways, http)
    state = api.gateway.state
    assert state is not None
    room_id = RoomId(state.topology.agent_rooms["echo"])
    owner = state.agent_apis["echo"]  # type: ignore[index]
    # The echo agent's room turned encrypted, with the person in it.
    await owner.send_state(room_id, "m.room.encryption", MEGOLM)
    await owner.invite(room_id, UserId(nio_person.client.user_id))
    await nio_person.client.join(room_id)

    def ready() -> bool:
        room = nio_person.client.rooms.get(room_id)
        return room is not None and room.encrypted

    await nio_person.until(ready, "the encrypted agent room")

    status, body = await api.post(
        "/api/v1/messages",
        {"to": "echo", "text": "sealed by the operator", "wait": True, "timeout_s": 30},
    )
    assert status == 200, body
    # The agent decrypted the operator's message (it echoes it) …
    assert "sealed by the operator" in body["reply"]["text"]
    # … and the person reads it from the operator as an encrypted event nio opened.
    await nio_person.until(
        lambda: bool(nio_person.replies_from(operator.user_id)), "the operator's message"
    )
    sent = nio_person.replies_from(operator.user_id)[0]
    assert sent.body == "sealed by the operator"
    assert sent.decrypted, "the operator's message went out in plaintext"
    # Read back through the API: decrypted with the keys the room's agent holds.
    status, read = await api.get("/api/v1/rooms/echo/messages?limit=2")
    assert status == 200, read
    assert [m["body"] for m in read["messages"]] == [
        "sealed by the operator",
        body["reply"]["text"],
    ]
    store = api.gateway.store
    assert store is not None
    account = await store.crypto.account(operator.user_id)
    assert account is not None and account[0] == operator.device_id
