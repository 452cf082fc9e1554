"""Accounts let go from memory and read back from the store when next needed: the
same keys, spent one-time keys stay spent, new ones are published as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import vodozemac

from salon.matrix.as_keys import TransactionKeys
from salon.matrix.crypto import CryptoSettings, DeviceCrypto
from salon.matrix.crypto.appservice import attach_appservice_device
from salon.matrix.crypto.keys import MEGOLM, Device
from salon.matrix.crypto.megolm import Outbound
from salon.matrix.crypto.olm import Olm
from salon.matrix.crypto.resident import ResidentAccounts
from salon.matrix.events import parse_event
from salon.store import Store

from .test_as_keys import AGENT, ALICE, ROOM, Api, _encrypted
from .test_crypto import KEY, Sessions, own

OTHER = "@salon_other:localhost"


class Held:
    def __init__(self, busy: bool = False) -> None:
        self.busy, self.evicted = busy, 0

    def evict(self) -> bool:
        self.evicted += not self.busy
        return not self.busy


def test_the_accounts_used_last_stay_and_one_in_use_is_never_let_go() -> None:
    resident = ResidentAccounts(2)
    a, busy, c, d = Held(), Held(busy=True), Held(), Held()
    for device in (a, busy, c):
        resident.used(device)
    assert (a.evicted, len(resident)) == (1, 2)
    resident.used(d)  # the oldest is busy: the next oldest goes
    assert (busy.evicted, c.evicted, len(resident)) == (0, 1, 2)
    with pytest.raises(ValueError):
        ResidentAccounts(0)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = await Store.open(store_url)
    try:
        yield store
    finally:
        await store.close()


async def test_a_let_go_account_opens_a_room_key_and_keeps_its_one_time_keys_right(
    store: Store,
) -> None:
    settings = CryptoSettings(KEY, resident=ResidentAccounts(1))
    api = Api(AGENT)
    crypto = await attach_appservice_device(api, store.crypto, settings)  # type: ignore[arg-type]
    assert crypto is not None and crypto.me.resident
    await attach_appservice_device(Api(OTHER), store.crypto, settings)  # type: ignore[arg-type]
    assert not crypto.me.resident  # the other one was used since

    # Alice claims one of the published one-time keys and sends a room key on it.
    key_id, signed = next(iter(api.uploads[0]["one_time_keys"].items()))
    claimed = {"one_time_keys": {AGENT: {crypto.device_id: {key_id: signed}}}}
    agent = Device(AGENT, crypto.device_id, crypto.me.curve25519, crypto.me.ed25519)

    async def send(sender: Olm, outbound: Outbound, n: int) -> list[str]:
        """A message waiting for its key, then the key on the claimed one-time key:
        the bodies the agent could open."""
        room_key = {
            "algorithm": MEGOLM,
            "room_id": ROOM,
            "session_id": outbound.session.session_id,
            "session_key": outbound.session.session_key.to_base64(),
        }
        message = parse_event(_encrypted(sender, outbound, n), ROOM, AGENT)
        assert message is not None
        assert await crypto.decrypt([message]) == []  # kept for its key
        await sender.start_sessions(claimed, [agent])
        session = await sender.session_for(agent)
        assert session is not None
        content = await sender.encrypt(agent, session, "m.room_key", room_key)
        event = {"type": "m.room.encrypted", "sender": ALICE, "content": content}
        opened = await crypto.process_sync({"to_device": {"events": [event]}})
        return [str(e.content.get("body")) for e in opened]

    to_alice = Olm(own(ALICE, "ALICEDEV"), Sessions())
    assert await send(to_alice, Outbound(vodozemac.GroupSession()), 1) == ["m1"]
    assert crypto.me.resident

    # Let go again: the key it spent was saved, so the same key opens nothing now.
    assert crypto.evict()
    replayed = Olm(own(ALICE, "ALICEDEV2"), Sessions())
    assert await send(replayed, Outbound(vodozemac.GroupSession()), 2) == []
    assert crypto.me.resident  # read back to try

    # Let go, then the homeserver holds few keys: read back, new ones published.
    assert crypto.evict()
    await crypto.process_sync({"device_one_time_keys_count": {"signed_curve25519": 2}})
    published = set(api.uploads[-1]["one_time_keys"])
    assert len(published) == 23 and crypto.one_time_keys == 23
    assert crypto.evict()
    stored = await store.crypto.account(AGENT)
    assert stored is not None
    account = vodozemac.Account.from_pickle(stored[1], KEY)
    assert account.one_time_keys == {}  # all it made were marked published, and saved
    assert account.curve25519_key.to_base64() == crypto.me.curve25519


class StateApi(Api):
    """Rooms' encryption looked up from the homeserver, counted."""

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.lookups: list[str] = []

    async def get_state_event(self, room_id: str, event_type: str) -> dict[str, Any]:
        self.lookups.append(room_id)
        return {}  # a plain room


async def test_an_appservice_device_notes_only_the_rooms_it_looked_up(store: Store) -> None:
    api = StateApi(AGENT)
    api.crypto = DeviceCrypto(api, store.crypto, own(AGENT, "AGENTDEV"), CryptoSettings(KEY))  # type: ignore[arg-type]
    keys = TransactionKeys({AGENT: api})  # type: ignore[dict-item]
    assert await api.crypto.rooms.encryption(ROOM) is None  # looked up once: plain
    elsewhere = "!elsewhere:localhost"
    turned = [
        {
            "event_id": f"$enc{room}",
            "room_id": room,
            "sender": ALICE,
            "state_key": "",
            "type": "m.room.encryption",
            "content": {"algorithm": MEGOLM},
        }
        for room in (ROOM, elsewhere)
    ]
    await keys.take({"events": turned}, readers=[])
    # Its room turned encrypted: noted. Another room: not kept in memory (each of a
    # thousand devices would keep every room), read from the store if it ever sends
    # there (stored once for all devices), not asked of the homeserver.
    assert await api.crypto.rooms.encryption(ROOM) == {"algorithm": MEGOLM}
    assert api.lookups == [ROOM]
    assert elsewhere not in api.crypto.rooms._encryption
    assert await api.crypto.rooms.encryption(elsewhere) == {"algorithm": MEGOLM}
    assert api.lookups == [ROOM]


class SlowApi(Api):
    """Key uploads that take a moment; how many were under way at once."""

    now = 0
    most = 0

    async def upload_keys(self, body: dict[str, Any]) -> dict[str, int]:
        SlowApi.now += 1
        SlowApi.most = max(SlowApi.most, SlowApi.now)
        await asyncio.sleep(0.01)
        SlowApi.now -= 1
        return {"signed_curve25519": len(body.get("one_time_keys") or {})}


async def test_devices_are_set_up_a_few_at_a_time(store: Store) -> None:
    """A thousand identities making their keys at once left ~45 MB of freed heap
    behind: both modes make them a few at a time."""
    SlowApi.most = 0
    settings = CryptoSettings(KEY, resident=ResidentAccounts(setups=2))
    appservice = [SlowApi(f"@salon_a{i}:localhost") for i in range(5)]
    await asyncio.gather(*(attach_appservice_device(a, store.crypto, settings) for a in appservice))  # type: ignore[arg-type]
    assert SlowApi.most == 2
    SlowApi.most = 0
    clients = [SlowApi(f"@salon_c{i}:localhost") for i in range(5)]
    for api in clients:
        api.device = "CLIENTDEV"
    await asyncio.gather(*(DeviceCrypto.attach(a, store.crypto, settings) for a in clients))  # type: ignore[arg-type]
    assert SlowApi.most == 2
    assert all(a.crypto is not None for a in [*appservice, *clients])
