"""The approval routes: list, approve, deny; stable error codes, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.api.rig import AUTH, ApiRig, rig_and_client
from tests.api.test_admin_routes import Client, _error
from tests.gateway.helpers import make_config

from salon.gateway.approvals import ApprovalDesk
from salon.store.approvals import ApprovalRecord, ApprovalState
from salon.store.records import now_ms


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def _pending(rig: ApiRig, aid: str) -> None:
    await rig.store.turns.admit("$t", "coder", "!r:localhost")  # the turn that waits
    await rig.store.approvals.create(
        ApprovalRecord(
            id=aid,
            turn_id="$t",
            agent_id="coder",
            tool="delegate",
            arguments={"agent": "writer", "task": "x"},
            room_id="!r:localhost",
            for_user="@alice:localhost",
            state=ApprovalState.PENDING,
            created_at=now_ms(),
            deadline_at=now_ms() + 60_000,
        )
    )


async def test_list_approve_deny_and_their_errors(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    await _pending(rig, "a1")
    await _pending(rig, "a2")
    base = "/api/v1/approvals"

    await _error(await client.post(f"{base}/a1/approve", headers=AUTH), 409, "approvals_off")
    config = make_config()
    rig.ctx.approvals = ApprovalDesk(rig.store, {}, lambda: config, lambda _u: False)

    listed = await (await client.get(f"{base}?state=pending", headers=AUTH)).json()
    assert sorted(a["id"] for a in listed["approvals"]) == ["a1", "a2"]
    answer = await client.post(f"{base}/a1/approve", headers=AUTH)
    assert answer.status == 200
    body = await answer.json()
    assert body["state"] == "approved" and body["decided_by"] == "api"
    denied = await (await client.post(f"{base}/a2/deny", headers=AUTH)).json()
    assert denied["state"] == "denied"

    await _error(await client.post(f"{base}/a1/deny", headers=AUTH), 409, "approval_decided")
    await _error(await client.post(f"{base}/nope/deny", headers=AUTH), 404, "approval_not_found")
    await _error(await client.get(f"{base}?state=maybe", headers=AUTH), 400, "invalid_request")
    await _error(await client.get(f"{base}?limit=0", headers=AUTH), 400, "invalid_request")
    listed = await (await client.get(f"{base}?state=pending", headers=AUTH)).json()
    assert listed["approvals"] == []
