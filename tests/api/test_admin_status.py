"""The admin API on a fake gateway: status (delegations, turns, loops, reachability)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.api.rig import AUTH, ApiRig, rig_and_client
from tests.api.test_admin_delegations import _record
from tests.api.test_admin_routes import Client
from tests.gateway.helpers import ALICE, CODER, CODER_USER
from tests.matrix.test_crypto import KEY, own

from salon.api.context import LoopState
from salon.matrix.crypto import CryptoSettings, DeviceCrypto
from salon.store.delegations import DelegationPhase


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def test_status_shows_one_line_per_delegation_turns_loops_and_reachability(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    store = rig.store
    # Both agents here: one row each way under one id; the line shows the furthest side.
    await store.delegations.create(_record("d-1", "out", DelegationPhase.SENT))
    await store.delegations.create(_record("d-1", "in", DelegationPhase.PROGRESS))
    await store.delegations.create(_record("d-2", "out", DelegationPhase.COMPLETED))
    await store.turns.admit("$t1", CODER, "!r:localhost")
    await store.turns.start("$t1", CODER)
    rig.runner.running = [("$t1", CODER)]
    rig.loops.append(LoopState("heartbeat:coder", False, 3, True, "MatrixConnectionError: down"))

    body = await (await client.get("/api/v1/status", headers=AUTH)).json()
    assert body["gateway"] == "test-gw"
    assert [(d["id"], d["from"], d["to"], d["state"]) for d in body["delegations"]] == [
        ("d-1", "coder", "writer", "progress")
    ]
    assert body["turns_in_flight"] == [
        {"event_id": "$t1", "agent": "coder", "state": "running", "attempts": 1}
    ]
    assert body["loops_restarting"] == ["heartbeat:coder"]
    assert body["loops_ok"] is False
    assert body["store"] == {"ok": True}
    assert body["store_size_bytes"] == await store.size_bytes() > 0
    assert body["homeserver"] == {"ok": True}

    rig.homeserver_up = False
    body = await (await client.get("/api/v1/status", headers=AUTH)).json()
    assert body["homeserver"]["ok"] is False


async def test_status_lists_the_encryption_device_of_each_identity(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    body = await (await client.get("/api/v1/status", headers=AUTH)).json()
    assert body["encryption"] == []  # no identity has a device (encryption off)
    settings = CryptoSettings(KEY)
    coder = DeviceCrypto(None, rig.store.crypto, own(CODER_USER, "CODERDEV"), settings)  # type: ignore[arg-type]
    coder.one_time_keys, coder.failures = 50, 1
    rig.agents[CODER].crypto = coder
    rig.operator.crypto = DeviceCrypto(None, rig.store.crypto, own(ALICE, "OPDEV"), settings)  # type: ignore[arg-type]
    body = await (await client.get("/api/v1/status", headers=AUTH)).json()
    assert body["encryption"] == [
        {
            "identity": ALICE,
            "device_id": "OPDEV",
            "one_time_keys": 0,
            "undecryptable_waiting": 0,
            "decryption_failures": 0,
        },
        {
            "identity": CODER_USER,
            "device_id": "CODERDEV",
            "one_time_keys": 50,
            "undecryptable_waiting": 0,
            "decryption_failures": 1,
        },
    ]


async def test_status_lists_the_appservice_transactions_set_aside(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    txns = rig.store.appservice_txns
    await txns.park("k1", 7, "{}")
    await txns.park("k2", 8, "{}")
    assert await txns.failed("k1", "ValueError: poisoned", 1)
    body = await (await client.get("/api/v1/status", headers=AUTH)).json()
    [aside] = body["appservice_set_aside"]
    assert {k: aside[k] for k in ("txn_id", "seq", "tries", "reason")} == {
        "txn_id": "k1",
        "seq": 7,
        "tries": 1,
        "reason": "ValueError: poisoned",
    }
    assert isinstance(aside["set_aside_at"], int)
