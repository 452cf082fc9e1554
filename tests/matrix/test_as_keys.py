"""Appservice mode's encryption: devices made through the appservice token, and the
key material of transactions fed to them (no homeserver: see
tests/integration/test_encrypted_appservice.py for the real one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import vodozemac
from aiohttp.test_utils import TestClient, TestServer

from salon._exceptions import ForbiddenError, MatrixRequestError, NotFoundError
from salon.ids import UserId
from salon.matrix.appservice import AppserviceSource, ListenAddress
from salon.matrix.crypto import CryptoSettings, DeviceCrypto
from salon.matrix.crypto.appservice import attach_appservice_device, sync_view
from salon.matrix.crypto.keys import MEGOLM
from salon.matrix.crypto.megolm import Outbound, encrypted_content
from salon.matrix.crypto.olm import Olm
from salon.matrix.events import InboundEvent, Invite
from salon.metrics import CRYPTO_UNAVAILABLE, DECRYPTION_FAILURES
from salon.store import Store

from .test_appservice import AUTH, ROUTER, TOKEN, Txns
from .test_crypto import KEY, Sessions, as_device, claimed, own

AGENT = UserId("@salon_echo:localhost")
ALICE = "@alice:localhost"
ROOM = "!dm:localhost"


class Sink:
    def __init__(self) -> None:
        self.admitted: list[tuple[UserId, list[tuple[str, str]]]] = []

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        self.admitted.append((identity, [(e.event_id, e.type) for e in events]))

    async def invited(self, invite: Invite) -> None:
        return None


class Api:
    """What of a MatrixAPI the appservice device and transactions use."""

    def __init__(self, user_id: str, *, put: Exception | None = None) -> None:
        self.user_id = UserId(user_id)
        self.crypto: Any = None
        self.put, self.login = put, None  # errors to raise
        self.calls: list[tuple[str, str]] = []
        self.device: str | None = None
        self.devices: set[str] = set()  # what the homeserver has
        self.uploads: list[dict[str, Any]] = []
        self.to_device: list[str] = []

    async def has_device(self, device_id: str) -> bool:
        self.calls.append(("get", device_id))
        return device_id in self.devices

    async def create_device(self, device_id: str, display_name: str) -> None:
        self.calls.append(("put", device_id))
        if self.put is not None:
            raise self.put
        self.devices.add(device_id)

    async def login_device(self, device_id: str, display_name: str) -> None:
        self.calls.append(("login", device_id))
        if self.login is not None:
            raise self.login
        self.devices.add(device_id)

    def act_as_device(self, device_id: str) -> None:
        self.device = device_id

    async def device_id(self) -> str | None:
        return self.device

    async def upload_keys(self, body: dict[str, Any]) -> dict[str, int]:
        self.uploads.append(body)
        return {"signed_curve25519": len(body.get("one_time_keys") or {})}

    async def upload_signing_keys(self, body: dict[str, Any]) -> None:
        return None

    async def send_to_device(self, event_type: str, messages: Any, **_: Any) -> None:
        self.to_device.append(event_type)  # key requests for events kept waiting

    async def upload_signatures(self, signed: dict[str, Any]) -> dict[str, Any]:
        return {"failures": {}}


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A fresh store, once per backend (SQLite and PostgreSQL)."""
    store = await Store.open(store_url)
    try:
        yield store
    finally:
        await store.close()


def _value(metric: Any) -> float:
    return float(metric._value.get())


def join(user: str) -> dict[str, Any]:
    return {
        "event_id": f"$join-{user}",
        "room_id": ROOM,
        "sender": user,
        "state_key": user,
        "type": "m.room.member",
        "content": {"membership": "join"},
        "origin_server_ts": 1,
    }


def test_each_device_gets_only_its_part_of_a_transaction() -> None:
    body = {
        "events": [],
        "de.sorunome.msc2409.to_device": [
            {"type": "m.room.encrypted", "to_user_id": AGENT, "to_device_id": "A", "n": 1},
            {"type": "m.room.encrypted", "to_user_id": AGENT, "to_device_id": "OLD", "n": 2},
            {"type": "m.room.encrypted", "to_user_id": ROUTER, "to_device_id": "R", "n": 3},
        ],
        "org.matrix.msc3202.device_one_time_keys_count": {
            AGENT: {"A": {"signed_curve25519": 7}},
            ROUTER: {"R": {"signed_curve25519": 50}},
        },
        "org.matrix.msc3202.device_unused_fallback_key_types": {
            AGENT: {"A": ["signed_curve25519"]}
        },
    }
    view = sync_view(body, AGENT, "A")
    assert view is not None
    assert [e["n"] for e in view["to_device"]["events"]] == [1]
    assert view["device_one_time_keys_count"] == {"signed_curve25519": 7}
    assert view["device_unused_fallback_key_types"] == ["signed_curve25519"]
    assert sync_view(body, AGENT, "GONE") is None
    assert sync_view({"events": []}, AGENT, "A") is None


async def test_a_device_is_made_once_and_kept_and_falls_back_to_login(store: Store) -> None:
    settings = CryptoSettings(KEY)
    api = Api(AGENT, put=NotFoundError("no MSC4190", http_status=404, errcode="M_NOT_FOUND"))
    crypto = await attach_appservice_device(api, store.crypto, settings)  # type: ignore[arg-type]
    assert crypto is not None and api.crypto is crypto
    device = crypto.device_id
    assert api.calls == [("get", device), ("put", device), ("login", device)]
    assert api.device == device and "device_keys" in api.uploads[0]
    assert (await store.crypto.account(AGENT) or ("",))[0] == device
    # After a restart: the same device, its keys not published again.
    again = Api(AGENT)
    again.devices = {device}
    crypto = await attach_appservice_device(again, store.crypto, settings)  # type: ignore[arg-type]
    assert crypto is not None and crypto.device_id == device
    assert again.calls == [("get", device)] and again.uploads == []
    # A homeserver that lost it (reset): made again, the same keys published again.
    reset = Api(AGENT)
    crypto = await attach_appservice_device(reset, store.crypto, settings)  # type: ignore[arg-type]
    assert crypto is not None and crypto.device_id == device
    assert reset.calls == [("get", device), ("put", device)]
    assert reset.uploads[0]["device_keys"] == api.uploads[0]["device_keys"]
    assert _value(CRYPTO_UNAVAILABLE.labels(identity=AGENT)) == 0


async def test_a_homeserver_that_makes_no_device_leaves_the_agent_without_one(
    store: Store,
) -> None:
    api = Api(AGENT, put=NotFoundError("no", http_status=404, errcode="M_NOT_FOUND"))
    api.login = ForbiddenError("no", http_status=403, errcode="M_FORBIDDEN")  # type: ignore[assignment]
    settings = CryptoSettings(KEY)
    assert await attach_appservice_device(api, store.crypto, settings) is None  # type: ignore[arg-type]
    assert api.crypto is None
    assert _value(CRYPTO_UNAVAILABLE.labels(identity=AGENT)) == 1


async def _source(apis: Sequence[Api]) -> tuple[AppserviceSource, Sink]:
    sink = Sink()
    source = AppserviceSource(
        TOKEN,
        Txns(),
        router=ROUTER,
        owns=lambda u: u in (ROUTER, AGENT),
        apis=apis,  # type: ignore[arg-type]
    )
    source._sink = sink  # started without a socket: the test client serves the app
    return source, sink


def _encrypted(to_alice: Olm, outbound: Outbound, n: int) -> dict[str, Any]:
    content = encrypted_content(to_alice, outbound, ROOM, "m.room.message", {"body": f"m{n}"})  # type: ignore[arg-type]
    return {
        "event_id": f"$e{n}",
        "room_id": ROOM,
        "sender": ALICE,
        "type": "m.room.encrypted",
        "content": content,
        "origin_server_ts": 10 + n,
    }


async def test_an_event_before_its_key_is_kept_then_admitted_opened(store: Store) -> None:
    me = own(AGENT, "AGENTDEV")
    api = Api(AGENT)
    api.crypto = DeviceCrypto(api, store.crypto, me, CryptoSettings(KEY))  # type: ignore[arg-type]
    source, sink = await _source([api])
    alice = own(ALICE, "ALICEDEV")
    to_alice = Olm(alice, Sessions())
    outbound = Outbound(vodozemac.GroupSession())
    # The room key as the sender hands it out, before its first message.
    key = {
        "algorithm": MEGOLM,
        "room_id": ROOM,
        "session_id": outbound.session.session_id,
        "session_key": outbound.session.session_key.to_base64(),
    }
    async with TestClient(TestServer(source.app())) as client:
        events = [join(AGENT), _encrypted(to_alice, outbound, 1)]
        r = await client.put(
            "/_matrix/app/v1/transactions/1", json={"events": events}, headers=AUTH
        )
        assert r.status == 200
        # Answered 200 only once the event that cannot be opened yet was kept.
        assert sink.admitted == [(AGENT, [(f"$join-{AGENT}", "m.room.member")])]
        assert await store.crypto.pending_count(AGENT) == 1

        await to_alice.start_sessions(claimed(me), [as_device(me)])
        session = await to_alice.session_for(as_device(me))
        assert session is not None
        content = await to_alice.encrypt(as_device(me), session, "m.room_key", key)
        to_device = {"type": "m.room.encrypted", "sender": ALICE, "content": content}
        body = {
            "events": [_encrypted(to_alice, outbound, 2)],
            "de.sorunome.msc2409.to_device": [
                {**to_device, "to_user_id": AGENT, "to_device_id": "AGENTDEV"}
            ],
        }
        r = await client.put("/_matrix/app/v1/transactions/2", json=body, headers=AUTH)
        assert r.status == 200
    # The kept one first, then this transaction's, both opened.
    assert sink.admitted[1:] == [
        (AGENT, [("$e1", "m.room.message")]),
        (AGENT, [("$e2", "m.room.message")]),
    ]
    assert await store.crypto.pending_count(AGENT) == 0


async def test_without_a_device_encrypted_events_are_dropped_and_counted() -> None:
    source, sink = await _source([])
    alice = own(ALICE, "ALICEDEV")
    outbound = Outbound(vodozemac.GroupSession())
    before = _value(DECRYPTION_FAILURES.labels(identity=AGENT, reason="no_device"))
    async with TestClient(TestServer(source.app())) as client:
        events = [join(AGENT), _encrypted(Olm(alice, Sessions()), outbound, 1)]
        r = await client.put(
            "/_matrix/app/v1/transactions/1", json={"events": events}, headers=AUTH
        )
        assert r.status == 200
    assert sink.admitted == [(AGENT, [(f"$join-{AGENT}", "m.room.member")])]
    assert _value(DECRYPTION_FAILURES.labels(identity=AGENT, reason="no_device")) == before + 1


class Pinged(Api):
    def __init__(self, errors: list[Exception]) -> None:
        super().__init__(ROUTER)
        self.errors = errors
        self.pings = 0

    async def joined_rooms(self) -> list[str]:
        return []

    async def ping_appservice(self, appservice_id: str) -> None:
        self.pings += 1
        if self.errors:
            raise self.errors.pop(0)


@pytest.mark.parametrize(
    ("error", "pings"),
    [
        # Synapse fails a ping that races its own retry (502): pinged again, later.
        (MatrixRequestError("AlreadyCalled", http_status=502, errcode="M_CONNECTION_FAILED"), 2),
        # No ping endpoint: not asked again.
        (MatrixRequestError("no", http_status=404, errcode="M_UNRECOGNIZED"), 1),
    ],
)
async def test_the_homeserver_is_pinged_once_listening(error: Exception, pings: int) -> None:
    api = Pinged([error])
    source = AppserviceSource(
        TOKEN,
        Txns(),
        router=ROUTER,
        owns=lambda u: u == ROUTER,
        apis=[api],  # type: ignore[list-item]
        listen=ListenAddress(port=0),
    )
    source.appservice_id = "salon"
    await source.start(Sink())
    try:
        # The start does not wait for a second ping (a second of every warm start).
        assert api.pings == 1
        for _ in range(100):
            if api.pings == pings:
                break
            await asyncio.sleep(0.05)
        assert api.pings == pings
    finally:
        await source.stop()


async def test_encryption_turned_on_in_a_transaction_is_stored_at_once(store: Store) -> None:
    """A restart reads a room's encryption from the store: a transaction turning it on
    must reach the store before it is answered (else a restart would send in clear)."""
    api = Api(AGENT)
    api.crypto = DeviceCrypto(api, store.crypto, own(AGENT, "AGENTDEV"), CryptoSettings(KEY))  # type: ignore[arg-type]
    await store.crypto.save_room_encryption(ROOM, None)  # learnt plain before
    source, _ = await _source([api])
    turned_on = {
        "event_id": "$enc",
        "room_id": ROOM,
        "sender": ALICE,
        "type": "m.room.encryption",
        "state_key": "",
        "content": {"algorithm": MEGOLM},
        "origin_server_ts": 5,
    }
    async with TestClient(TestServer(source.app())) as client:
        r = await client.put(
            "/_matrix/app/v1/transactions/1", json={"events": [turned_on]}, headers=AUTH
        )
        assert r.status == 200
    assert await store.crypto.room_encryption(ROOM) == ({"algorithm": MEGOLM},)
