"""`/healthz`, `/readyz` and `/metrics` on a fake gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.api.rig import AUTH, ApiRig, rig_and_client

from salon.api.context import LoopState
from salon.store.delegations import DelegationDirection, DelegationPhase, DelegationRecord
from salon.store.records import InboxItem, InboxState

Client = TestClient[Any, Any]


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def test_healthz_needs_no_token(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.homeserver_up = False  # alive is not ready
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"ok": True}


async def test_ready_when_loops_store_and_homeserver_are(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    response = await client.get("/readyz", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["ready"] is True and body["problems"] == []
    assert body["checks"]["store"] == {"ok": True}
    assert body["checks"]["homeserver"] == {"ok": True}
    assert body["checks"]["loops"] == {"ok": True, "failing": []}
    # An MCP server restarting is shown in the status, but the gateway still answers.
    rig.loops.append(LoopState("mcp:notes", False, 3, True, "ConnectionError: gone"))
    again = await client.get("/readyz", headers=AUTH)
    assert again.status == 200, await again.text()
    # The store check really wrote.
    assert await rig.store.kv.get("api:readyz") is not None


async def test_not_ready_names_each_problem(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.homeserver_up = False
    rig.loops += [
        LoopState("sync:@salon_coder:localhost", False, 2, True, "MatrixConnectionError: gone"),
        LoopState("dispatcher", False, 0, False, None),
    ]
    response = await client.get("/readyz", headers=AUTH)
    assert response.status == 503
    body = await response.json()
    assert body["ready"] is False
    checks = body["checks"]
    assert checks["homeserver"] == {"ok": False, "error": "no answer"}
    assert [loop["name"] for loop in checks["loops"]["failing"]] == [
        "sync:@salon_coder:localhost",
        "dispatcher",
    ]
    assert checks["store"] == {"ok": True}
    assert body["problems"] == [
        "loop sync:@salon_coder:localhost is backing off (MatrixConnectionError: gone)",
        "loop dispatcher is not running",
        "homeserver: no answer",
    ]


async def test_a_store_that_cannot_write_is_not_ready(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    await rig.store.close()
    response = await client.get("/readyz", headers=AUTH)
    assert response.status == 503
    body = await response.json()
    assert body["checks"]["store"]["ok"] is False
    assert body["problems"][0].startswith("store: ")


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample}{labels}")


async def test_metrics_parse_and_carry_the_store_gauges(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    store = rig.store
    items = [
        InboxItem(f"$e{i}", "!r:localhost", "@a:localhost", "m.room.message", "{}", 0, "@b:x")
        for i in range(3)
    ]
    await store.inbox.admit(items)
    await store.inbox.mark("$e0", InboxState.DONE)

    def record(id: str, direction: str, state: DelegationPhase) -> DelegationRecord:
        return DelegationRecord(
            id=id,
            direction=DelegationDirection(direction),
            from_agent="coder",
            to_agent="writer",
            task="t",
            root=id,
            chain=("coder",),
            hop=1,
            target_room="!w:localhost",
            deadline_ts=0,
            state=state,
        )

    # d-1: both sides here (sent out, accepted in) counts once, as accepted.
    await store.delegations.create(record("d-1", "out", DelegationPhase.SENT))
    await store.delegations.create(record("d-1", "in", DelegationPhase.ACCEPTED))
    await store.delegations.create(record("d-2", "out", DelegationPhase.PROGRESS))
    await store.delegations.create(record("d-3", "out", DelegationPhase.FAILED))

    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = _families(await response.text())
    assert _value(families, "salon_inbox_depth", "salon_inbox_depth") == 2
    gauge = "salon_delegations_open"
    assert _value(families, gauge, gauge, state="accepted") == 1
    assert _value(families, gauge, gauge, state="progress") == 1
    assert _value(families, gauge, gauge, state="sent") == 0
    assert _value(families, gauge, gauge, state="pending") == 0
    assert not [s for s in families[gauge].samples if s.labels["state"] == "failed"]
    # The counters and histograms of the issue are all there, named by convention.
    for name, kind in [
        ("salon_turns", "counter"),
        ("salon_turn_duration_seconds", "histogram"),
        ("salon_turn_first_chunk_seconds", "histogram"),
        ("salon_replies_sent", "counter"),
        ("salon_edits_sent", "counter"),
        ("salon_backend_errors", "counter"),
        ("salon_sync_lag_seconds", "gauge"),
        ("salon_rate_limit_waits", "counter"),
        ("salon_events_dropped", "counter"),
    ]:
        assert families[name].type == kind, name

    # Scraped again after the inbox drained and d-2 ended: the gauges follow the store.
    await store.inbox.mark("$e1", InboxState.DONE)
    await store.inbox.mark("$e2", InboxState.DROPPED)
    await store.delegations.set_state("d-2", DelegationPhase.COMPLETED)
    families = _families(await (await client.get("/metrics", headers=AUTH)).text())
    assert _value(families, "salon_inbox_depth", "salon_inbox_depth") == 0
    assert _value(families, gauge, gauge, state="progress") == 0


async def test_metrics_still_answer_when_the_store_fails(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    await rig.store.close()
    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 200
    families = _families(await response.text())
    assert _value(families, "salon_events_admitted", "salon_events_admitted_total") >= 0
