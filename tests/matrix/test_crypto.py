"""The Olm/Megolm machine's pieces (vodozemac underneath), without a homeserver."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import vodozemac

from salon._exceptions import NotFoundError
from salon.ids import EventId, RoomId, UserId
from salon.matrix.crypto import CryptoSettings, DeviceCrypto
from salon.matrix.crypto.keys import MEGOLM, Device, device_keys, parse_device, sign, verify
from salon.matrix.crypto.megolm import Outbound, Undecryptable, encrypted_content, open_event
from salon.matrix.crypto.olm import Olm, OwnDevice
from salon.matrix.events import InboundEvent
from salon.metrics import DECRYPTION_FAILURES
from salon.store import Store

KEY = b"k" * 32
ROOM = RoomId("!room:example.org")


class Sessions:
    """Olm sessions in memory."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], str] = {}

    async def olm_sessions(self, user_id: str, sender_key: str) -> list[tuple[str, str]]:
        return [(s, p) for (u, k, s), p in self.rows.items() if (u, k) == (user_id, sender_key)]

    async def save_olm_session(self, user_id: str, sender_key: str, sid: str, pickle: str) -> None:
        self.rows[(user_id, sender_key, sid)] = pickle


def own(user_id: str, device_id: str) -> OwnDevice:
    async def save() -> None:
        return None

    return OwnDevice(user_id, device_id, vodozemac.Account(), KEY, save)


def as_device(me: OwnDevice) -> Device:
    return Device(me.user_id, me.device_id, me.curve25519, me.ed25519)


def claimed(me: OwnDevice) -> dict[str, Any]:
    """A /keys/claim answer with one signed one-time key of ``me``."""
    me.account.generate_one_time_keys(1)
    key_id, key = next(iter(me.account.one_time_keys.items()))
    me.account.mark_keys_as_published()
    signed = sign({"key": key.to_base64()}, me.account, me.user_id, me.device_id)
    return {"one_time_keys": {me.user_id: {me.device_id: {f"signed_curve25519:{key_id}": signed}}}}


def test_signed_json_verifies_and_tampering_does_not() -> None:
    me = own("@a:x", "DEV")
    keys = device_keys(me.account, "@a:x", "DEV")
    assert verify(keys, "@a:x", "DEV", me.ed25519)
    assert parse_device("@a:x", "DEV", keys) == as_device(me)
    forged = {**keys, "keys": {**keys["keys"], "curve25519:DEV": "A" * 43}}
    assert not verify(forged, "@a:x", "DEV", me.ed25519)
    assert parse_device("@a:x", "DEV", forged) is None
    assert parse_device("@b:x", "DEV", keys) is None  # listed under another user


async def test_a_room_key_goes_over_olm_to_the_right_device_only() -> None:
    alice, bob = own("@alice:x", "A"), own("@bob:x", "B")
    to_alice, to_bob = Olm(alice, Sessions()), Olm(bob, Sessions())
    await to_alice.start_sessions(claimed(bob), [as_device(bob)])
    session = await to_alice.session_for(as_device(bob))
    assert session is not None
    content = await to_alice.encrypt(as_device(bob), session, "m.room_key", {"x": 1})
    payload = await to_bob.decrypt("@alice:x", content)
    assert payload is not None
    assert (payload.type, payload.content, payload.signing_key) == (
        "m.room_key",
        {"x": 1},
        alice.ed25519,
    )
    # Claimed to come from someone else: refused.
    session = await to_alice.session_for(as_device(bob))
    assert session is not None
    again = await to_alice.encrypt(as_device(bob), session, "m.room_key", {"x": 2})
    assert await to_bob.decrypt("@mallory:x", again) is None


async def test_an_unsigned_one_time_key_starts_no_session() -> None:
    alice, bob = own("@alice:x", "A"), own("@bob:x", "B")
    answer = claimed(bob)
    for key in answer["one_time_keys"]["@bob:x"]["B"].values():
        key["signatures"]["@bob:x"]["ed25519:B"] = "A" * 86
    olm = Olm(alice, Sessions())
    await olm.start_sessions(answer, [as_device(bob)])
    assert await olm.session_for(as_device(bob)) is None


def test_an_outbound_session_rotates_when_a_member_leaves_or_it_is_used_up() -> None:
    outbound = Outbound(vodozemac.GroupSession(), {"@a:x|A", "@b:x|B"})
    assert not outbound.departed({"@a:x", "@b:x", "@c:x"})
    assert outbound.departed({"@a:x"})
    assert not outbound.expired({})
    outbound.session.encrypt(b"1")
    assert outbound.expired({"rotation_period_msgs": 1})
    restored = Outbound.from_row(outbound.to_row(KEY), KEY)
    assert restored.session.session_id == outbound.session.session_id
    assert restored.shared_with == outbound.shared_with


def test_a_megolm_event_opens_only_in_its_room_and_keeps_its_relation() -> None:
    me = own("@a:x", "A")
    outbound = Outbound(vodozemac.GroupSession())
    inbound = vodozemac.InboundGroupSession(outbound.session.session_key).pickle(KEY)
    relation = {"rel_type": "m.replace", "event_id": "$orig"}
    content = encrypted_content(
        Olm(me, Sessions()),
        outbound,
        ROOM,
        "m.room.message",
        {"body": "a secret phrase", "m.relates_to": relation},
    )
    assert content["m.relates_to"] == relation  # in clear, as the spec asks
    assert "secret" not in json.dumps(content)
    raw = {"event_id": "$e", "type": "m.room.encrypted", "content": content}
    opened = open_event(raw, ROOM, inbound, KEY)
    assert (opened["type"], opened["content"]["body"]) == ("m.room.message", "a secret phrase")
    with pytest.raises(Undecryptable) as caught:
        open_event(raw, "!other:x", inbound, KEY)
    assert caught.value.reason == "wrong_room"


def _failures(identity: str, reason: str) -> float:
    return float(DECRYPTION_FAILURES.labels(identity=identity, reason=reason)._value.get())


async def test_an_event_waits_for_its_key_then_opens_or_is_dropped(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        bob = own("@bob:x", "B")
        settings = CryptoSettings(KEY, undecryptable_wait_s=3600)
        machine = DeviceCrypto(None, store.crypto, bob, settings)  # type: ignore[arg-type]
        alice = own("@alice:x", "A")
        to_alice = Olm(alice, Sessions())
        outbound = Outbound(vodozemac.GroupSession())

        def event(n: int) -> InboundEvent:
            body = {"body": f"m{n}"}
            content = encrypted_content(to_alice, outbound, ROOM, "m.room.message", body)
            raw = {
                "event_id": f"$e{n}",
                "sender": "@alice:x",
                "type": "m.room.encrypted",
                "content": content,
                "origin_server_ts": n,
            }
            return InboundEvent(
                EventId(f"$e{n}"),
                ROOM,
                UserId("@alice:x"),
                "m.room.encrypted",
                content,
                n,
                UserId("@bob:x"),
                raw={**raw, "room_id": ROOM},
            )

        # The room key as the sender hands it out, before its first message.
        key = {
            "algorithm": MEGOLM,
            "room_id": ROOM,
            "session_id": outbound.session.session_id,
            "session_key": outbound.session.session_key.to_base64(),
        }
        assert await machine.decrypt([event(1)]) == []
        assert await machine.waiting() == 1
        # The room key arrives over Olm in a later sync: the waiting event opens.
        await to_alice.start_sessions(claimed(bob), [as_device(bob)])
        session = await to_alice.session_for(as_device(bob))
        assert session is not None
        to_device = await to_alice.encrypt(as_device(bob), session, "m.room_key", key)
        sync = {
            "to_device": {
                "events": [{"type": "m.room.encrypted", "sender": "@alice:x", "content": to_device}]
            }
        }
        retried = await machine.process_sync(sync)
        assert [(e.event_id, e.type, e.body) for e in retried] == [("$e1", "m.room.message", "m1")]
        assert await machine.waiting() == 0
        # One whose key never comes is dropped once the wait is over: counted, logged.
        stray = Outbound(vodozemac.GroupSession())
        outbound = stray
        assert await machine.decrypt([event(2)]) == []
        before = _failures("@bob:x", "key_never_arrived")
        machine.settings = CryptoSettings(KEY, undecryptable_wait_s=0.001)
        await asyncio.sleep(0.01)
        assert await machine.process_sync({}) == []
        assert _failures("@bob:x", "key_never_arrived") == before + 1
        assert await machine.waiting() == 0
    finally:
        await store.close()


async def test_the_crypto_store_keeps_accounts_and_pending_events(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        crypto = store.crypto
        assert await crypto.account("@a:x") is None
        await crypto.save_account("@a:x", "DEV", "pickle", False)
        await crypto.save_account("@a:x", "DEV", "pickle2", True)
        assert await crypto.account("@a:x") == ("DEV", "pickle2", True)
        assert await crypto.add_inbound_group("@a:x", "!r", "s1", ("c", "e"), "p1")
        assert not await crypto.add_inbound_group("@a:x", "!r", "s1", ("c", "e"), "p2")
        assert await crypto.inbound_group("@a:x", "!r", "s1") == ("c", "e", "p1")
        await crypto.add_pending("@a:x", "$1", "!r", "s1", "{}")
        await crypto.add_pending("@a:x", "$1", "!r", "s1", "{}")  # a replayed batch
        assert await crypto.pending_count("@a:x") == 1
        assert await crypto.pending_for("@a:x", "!r", "s1") == ["{}"]
        assert await crypto.pending_older_than("@a:x", 2**62) == [("$1", "!r")]
        await crypto.drop_pending("@a:x", "$1")
        assert await crypto.pending_count("@a:x") == 0
        await crypto.save_outbound_group("@a:x", "!r", "op", "[]", 5)
        assert await crypto.outbound_group("@a:x", "!r") == ("op", "[]", 5)
        await crypto.forget_sessions("@a:x")
        assert await crypto.outbound_group("@a:x", "!r") is None
        assert await crypto.room_encryption("!r") is None
        await crypto.save_room_encryption("!r", None)
        assert await crypto.room_encryption("!r") == (None,)
        await crypto.save_room_encryption("!r", {"algorithm": "m.megolm.v1.aes-sha2"})
        assert await crypto.room_encryption("!r") == ({"algorithm": "m.megolm.v1.aes-sha2"},)
    finally:
        await store.close()


class StateReads:
    """The homeserver's answer to ``m.room.encryption`` reads, counted."""

    def __init__(self, content: dict[str, Any] | None) -> None:
        self.content, self.reads = content, 0
        self.user_id = UserId("@bob:x")

    async def get_state_event(self, room_id: RoomId, event_type: str) -> dict[str, Any]:
        self.reads += 1
        if self.content is None:
            raise NotFoundError("no state", http_status=404, errcode="M_NOT_FOUND")
        return self.content


async def test_a_rooms_encryption_is_asked_once_then_read_from_the_store(
    tmp_path: Path,
) -> None:
    """After a restart the first reply in each room asked the homeserver again (a
    hundred rooms at once): what was learnt is stored, and kept up to date."""
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        settings = CryptoSettings(KEY)
        api = StateReads(None)
        first = DeviceCrypto(api, store.crypto, own("@bob:x", "B"), settings)  # type: ignore[arg-type]
        assert await first.encrypt(ROOM, "m.room.message", {"body": "hi"}) == (
            "m.room.message",
            {"body": "hi"},
        )
        assert api.reads == 1
        again = DeviceCrypto(api, store.crypto, own("@bob:x", "B"), settings)  # type: ignore[arg-type]
        assert await again.rooms.encryption(ROOM) is None
        assert api.reads == 1, "a restarted identity reads the store, not the homeserver"
        # Encryption turned on in the room: followed, stored at once, found after a restart.
        turned_on = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
        await again.process_sync({"rooms": {"join": {ROOM: {"timeline": {"events": [turned_on]}}}}})
        later = DeviceCrypto(api, store.crypto, own("@bob:x", "B"), settings)  # type: ignore[arg-type]
        assert await later.rooms.encryption(ROOM) == {"algorithm": MEGOLM}
        assert api.reads == 1
        # An identity that follows no events asks each time (the store may be stale).
        blind = DeviceCrypto(api, store.crypto, own("@bob:x", "B"), settings)  # type: ignore[arg-type]
        blind.follows_sync = False
        assert await blind.rooms.encryption(ROOM) is None
        assert api.reads == 2
    finally:
        await store.close()
