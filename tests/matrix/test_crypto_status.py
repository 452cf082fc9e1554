"""Each identity's device as `salon status` and /api/v1/status show it: device id,
one-time keys held, events waiting for a room key, decryption failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import vodozemac
from tests.matrix.test_crypto import KEY, ROOM, Sessions, own

from salon.ids import EventId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import CryptoSettings, DeviceCrypto, device_reports
from salon.matrix.crypto.megolm import Outbound, encrypted_content
from salon.matrix.crypto.olm import Olm
from salon.matrix.events import InboundEvent
from salon.store import Store


def _stray(n: int) -> InboundEvent:
    """An encrypted event whose room key nobody ever shares."""
    alice = own("@alice:x", "A")
    outbound = Outbound(vodozemac.GroupSession())
    content = encrypted_content(
        Olm(alice, Sessions()), outbound, ROOM, "m.room.message", {"body": "x"}
    )
    raw = {"event_id": f"$s{n}", "sender": "@alice:x", "type": "m.room.encrypted"}
    return InboundEvent(
        EventId(f"$s{n}"),
        ROOM,
        UserId("@alice:x"),
        "m.room.encrypted",
        content,
        n,
        UserId("@bob:x"),
        raw={**raw, "content": content, "room_id": ROOM, "origin_server_ts": n},
    )


async def test_the_report_counts_waiting_events_and_failures(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        settings = CryptoSettings(KEY, undecryptable_wait_s=3600)
        machine = DeviceCrypto(None, store.crypto, own("@bob:x", "BOBDEV"), settings)  # type: ignore[arg-type]
        machine.one_time_keys = 42
        await machine.decrypt([_stray(1), _stray(2)])
        assert machine.report() == {
            "identity": "@bob:x",
            "device_id": "BOBDEV",
            "one_time_keys": 42,
            "undecryptable_waiting": 2,
            "decryption_failures": 0,
        }
        machine.settings = CryptoSettings(KEY, undecryptable_wait_s=0.001)
        await asyncio.sleep(0.01)
        await machine.process_sync({})  # both waited too long: given up on
        report = machine.report()
        assert (report["undecryptable_waiting"], report["decryption_failures"]) == (0, 2)
    finally:
        await store.close()


async def test_device_reports_list_each_identity_with_a_device_once(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        settings = CryptoSettings(KEY)
        bob = DeviceCrypto(None, store.crypto, own("@bob:x", "B"), settings)  # type: ignore[arg-type]
        amy = DeviceCrypto(None, store.crypto, own("@amy:x", "A"), settings)  # type: ignore[arg-type]
        apis = [
            cast(MatrixAPI, SimpleNamespace(crypto=bob)),
            cast(MatrixAPI, SimpleNamespace(crypto=None)),  # no device (encryption off)
            cast(MatrixAPI, SimpleNamespace(crypto=amy)),
            cast(MatrixAPI, SimpleNamespace(crypto=bob)),
        ]
        rows = device_reports(apis)
        assert [(r["identity"], r["device_id"]) for r in rows] == [("@amy:x", "A"), ("@bob:x", "B")]
    finally:
        await store.close()
