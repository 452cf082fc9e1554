"""The admin API on a fake gateway: delegate, and wait for the outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.api.rig import AUTH, ApiRig, rig_and_client
from tests.api.test_admin_routes import Client, _error
from tests.gateway.helpers import CODER, eventually

from salon.agents.tools import DelegationOutcome
from salon.store.delegations import DelegationDirection, DelegationPhase, DelegationRecord


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


def _record(id: str, direction: str, state: DelegationPhase, **extra: Any) -> DelegationRecord:
    return DelegationRecord(
        id=id,
        direction=DelegationDirection(direction),
        from_agent=extra.pop("from_agent", "coder"),
        to_agent=extra.pop("to_agent", "writer"),
        task=extra.pop("task", "write it"),
        root=id,
        chain=("coder",),
        hop=1,
        target_room="!writer:localhost",
        deadline_ts=0,
        state=state,
        **extra,
    )


async def test_delegate_and_wait_returns_the_outcome_with_its_id(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    rig.delegations.outcome = DelegationOutcome(True, "the poem")
    real_delegate = rig.delegations.delegate

    async def delegate(from_agent: str, to_agent: str, task: str, **kwargs: Any) -> Any:
        await rig.store.delegations.create(
            _record("d-1", "out", DelegationPhase.COMPLETED, task=task)
        )
        return await real_delegate(from_agent, to_agent, task, **kwargs)

    rig.delegations.delegate = delegate  # type: ignore[method-assign]
    response = await client.post(
        "/api/v1/delegations",
        json={"from": "coder", "to": "writer", "task": "write it", "context": "short"},
        headers=AUTH,
    )
    assert response.status == 200, await response.text()
    assert await response.json() == {"ok": True, "text": "the poem", "id": "d-1"}
    [call] = rig.delegations.calls
    assert call == {
        "from": "coder",
        "to": "writer",
        "task": "write it",
        "context": "short",
        "origin_room": rig.rooms[CODER],
        "origin_event": None,
        "wait": True,
    }


async def test_delegate_without_wait_returns_the_id(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.delegations.outcome = DelegationOutcome(True, "d-7")
    response = await client.post(
        "/api/v1/delegations",
        json={"from": "coder", "to": "writer", "task": "t", "wait": False},
        headers=AUTH,
    )
    assert await response.json() == {"ok": True, "text": "d-7", "id": "d-7"}
    assert rig.delegations.calls[0]["wait"] is False


async def test_a_refused_delegation_is_an_outcome(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.delegations.outcome = DelegationOutcome(False, "[NOT ALLOWED] coder may not delegate")
    response = await client.post(
        "/api/v1/delegations", json={"from": "coder", "to": "writer", "task": "t"}, headers=AUTH
    )
    assert response.status == 200
    assert await response.json() == {
        "ok": False,
        "text": "[NOT ALLOWED] coder may not delegate",
        "id": None,
    }


async def test_a_slow_delegation_is_504_and_goes_on(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    rig.delegations.delay = 0.5
    response = await client.post(
        "/api/v1/delegations",
        json={"from": "coder", "to": "writer", "task": "t", "timeout_s": 0.1},
        headers=AUTH,
    )
    await _error(response, 504, "timeout")
    # Not cancelled with the request: it finishes (0.5 s; waited for, as load may slow it).
    await eventually(lambda: rig.delegations.finished == 1, what="the delegation to finish")


async def test_delegation_bodies_are_checked(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    for body, status, code in [
        ({"to": "writer", "task": "t"}, 400, "invalid_request"),
        ({"from": "coder", "to": "writer"}, 400, "invalid_request"),
        ({"from": "coder", "to": "writer", "task": "t", "context": 1}, 400, "invalid_request"),
        ({"from": "zed", "to": "writer", "task": "t"}, 404, "agent_not_found"),
        ({"from": "coder", "to": "zed", "task": "t"}, 404, "agent_not_found"),
    ]:
        await _error(
            await client.post("/api/v1/delegations", json=body, headers=AUTH), status, code
        )
    assert rig.delegations.calls == []


async def test_a_remote_a2a_agent_may_be_delegated_to(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    body = {"from": "coder", "to": "helper", "task": "t", "wait": False}
    response = await client.post("/api/v1/delegations", json=body, headers=AUTH)
    await _error(response, 404, "agent_not_found")
    rig.delegations.remotes = {"helper": object()}  # type: ignore[attr-defined]
    response = await client.post("/api/v1/delegations", json=body, headers=AUTH)
    assert response.status == 200 and rig.delegations.calls[-1]["to"] == "helper"
