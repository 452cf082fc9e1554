"""`POST /api/v1/agents/spawn`: body checks, the template looked up, the id returned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.rig import AUTH, ApiRig, rig_and_client

Client = TestClient[Any, Any]


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def test_spawn_starts_a_session_agent_through_the_gateway(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    asked: list[tuple[Any, ...]] = []

    async def spawn(template: str, ttl_s: float, idle_s: float | None, name: str | None) -> str:
        asked.append((template, ttl_s, idle_s, name))
        return "coder"  # the fake roster only knows its own agents

    rig.ctx.spawn = spawn
    response = await client.post(
        "/api/v1/agents/spawn", headers=AUTH, json={"from": "coder", "ttl_s": 60, "idle_s": 30}
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["id"] == "coder"
    assert asked == [("coder", 60.0, 30.0, None)]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"from": "nobody", "ttl_s": 60}, 404, "agent_not_found"),
        ({"from": "coder"}, 400, "invalid_request"),
        ({"from": "coder", "ttl_s": -1}, 400, "invalid_request"),
        ({"from": "coder", "ttl_s": 60, "idle_s": True}, 400, "invalid_request"),
        ({"from": "coder", "ttl_s": 60, "extra": 1}, 400, "invalid_request"),
    ],
)
async def test_spawn_refuses_bad_bodies(
    rc: tuple[ApiRig, Client], body: dict[str, Any], status: int, code: str
) -> None:
    rig, client = rc

    async def spawn(*args: Any) -> str:
        raise AssertionError("must not be called")

    rig.ctx.spawn = spawn
    response = await client.post("/api/v1/agents/spawn", headers=AUTH, json=body)
    assert response.status == status
    assert (await response.json())["error"]["code"] == code
