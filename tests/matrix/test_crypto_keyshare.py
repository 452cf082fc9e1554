"""Key requests: an event that arrives before its room key asks the sender's devices
(and this identity's own) for it, once per session; a forwarded key is taken only
when asked for, and only from that event's sender or this identity itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import vodozemac
from tests.matrix.test_crypto import KEY, ROOM, Sessions, as_device, claimed, own

from salon.ids import EventId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import CryptoSettings, DeviceCrypto
from salon.matrix.crypto.keys import MEGOLM
from salon.matrix.crypto.megolm import Outbound, encrypted_content
from salon.matrix.crypto.olm import Olm, OwnDevice
from salon.matrix.events import InboundEvent
from salon.store import Store

BOB = "@bob:x"


class ToDevice:
    """The homeserver's to-device endpoint, recording what was sent."""

    user_id = BOB

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send_to_device(
        self, event_type: str, messages: dict[str, Any], *, txn_id: str
    ) -> None:
        self.sent.append((event_type, messages))


class Sender:
    """Alice's device: a Megolm session of hers, and an Olm channel to Bob."""

    def __init__(self, user_id: str = "@alice:x") -> None:
        self.me = own(user_id, "A")
        self.olm = Olm(self.me, Sessions())
        self.outbound = Outbound(vodozemac.GroupSession())
        # Its key as at its first message, as a device that holds it forwards it.
        self.first = vodozemac.InboundGroupSession(self.outbound.session.session_key)
        self.n = 0

    def event(self) -> InboundEvent:
        self.n += 1
        content = encrypted_content(
            self.olm, self.outbound, ROOM, "m.room.message", {"body": f"m{self.n}"}
        )
        event_id = f"${self.me.user_id}{self.n}"
        raw = {
            "event_id": event_id,
            "sender": self.me.user_id,
            "type": "m.room.encrypted",
            "content": content,
            "origin_server_ts": self.n,
            "room_id": ROOM,
        }
        return InboundEvent(
            EventId(event_id),
            ROOM,
            UserId(self.me.user_id),
            "m.room.encrypted",
            content,
            self.n,
            UserId(BOB),
            raw=raw,
        )

    async def forward(
        self, to: OwnDevice, session: vodozemac.InboundGroupSession
    ) -> dict[str, Any]:
        """A sync holding ``session``'s key forwarded to ``to`` over Olm."""
        exported = session.export_at(session.first_known_index)
        assert exported is not None
        key = {
            "algorithm": MEGOLM,
            "room_id": ROOM,
            "session_id": session.session_id,
            "session_key": exported.to_base64(),
            "sender_key": self.me.curve25519,
            "sender_claimed_ed25519_key": self.me.ed25519,
            "forwarding_curve25519_key_chain": [],
        }
        if await self.olm.session_for(as_device(to)) is None:
            await self.olm.start_sessions(claimed(to), [as_device(to)])
        olm_session = await self.olm.session_for(as_device(to))
        assert olm_session is not None
        content = await self.olm.encrypt(as_device(to), olm_session, "m.forwarded_room_key", key)
        event = {"type": "m.room.encrypted", "sender": self.me.user_id, "content": content}
        return {"to_device": {"events": [event]}}


@pytest.fixture
async def bob(tmp_path: Path) -> AsyncIterator[tuple[DeviceCrypto, ToDevice, Store]]:
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    api = ToDevice()
    machine = DeviceCrypto(cast(MatrixAPI, api), store.crypto, own(BOB, "B"), CryptoSettings(KEY))
    try:
        yield machine, api, store
    finally:
        await store.close()


async def test_a_missing_key_is_requested_once_per_session(
    bob: tuple[DeviceCrypto, ToDevice, Store],
) -> None:
    machine, api, _ = bob
    alice = Sender()
    assert await machine.decrypt([alice.event(), alice.event()]) == []
    assert await machine.decrypt([alice.event()]) == []  # a later batch, same session
    [(kind, messages)] = api.sent
    assert kind == "m.room_key_request"
    assert set(messages) == {"@alice:x", BOB}  # the sender's devices and our own
    request = messages["@alice:x"]["*"]
    assert request["action"] == "request" and request["requesting_device_id"] == "B"
    assert request["body"] == {
        "algorithm": MEGOLM,
        "room_id": ROOM,
        "session_id": alice.outbound.session.session_id,
        "sender_key": alice.me.curve25519,
    }
    alice.outbound = Outbound(vodozemac.GroupSession())  # a new session: asked anew
    assert await machine.decrypt([alice.event()]) == []
    assert len(api.sent) == 2


async def test_a_forwarded_key_asked_for_opens_the_waiting_events(
    bob: tuple[DeviceCrypto, ToDevice, Store],
) -> None:
    machine, _, store = bob
    alice = Sender()
    await machine.decrypt([alice.event(), alice.event()])
    opened = await machine.process_sync(await alice.forward(machine.me, alice.first))
    assert [e.body for e in opened] == ["m1", "m2"]
    assert await store.crypto.pending_count(BOB) == 0


async def test_a_forwarded_key_from_a_stranger_or_not_asked_for_is_refused(
    bob: tuple[DeviceCrypto, ToDevice, Store],
) -> None:
    machine, _, store = bob
    alice, mallory = Sender(), Sender("@mallory:x")
    await machine.decrypt([alice.event()])
    session_id = alice.outbound.session.session_id
    # Mallory forwards the very key the event waits for: not the sender, not us.
    forwarded = await mallory.forward(machine.me, alice.first)
    assert await machine.process_sync(forwarded) == []
    assert await store.crypto.inbound_group(BOB, ROOM, session_id) is None
    assert await store.crypto.pending_count(BOB) == 1
    # Alice forwards a key nothing waits for: not taken either.
    other = vodozemac.InboundGroupSession(vodozemac.GroupSession().session_key)
    assert await machine.process_sync(await alice.forward(machine.me, other)) == []
    assert await store.crypto.inbound_group(BOB, ROOM, other.session_id) is None
