"""The admin API on a fake gateway: auth and agents. Sending is test_admin_send.py,
reading test_admin_read.py, delegating test_admin_delegations.py, status
test_admin_status.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.rig import AUTH, ApiRig, rig_and_client
from tests.gateway.helpers import CODER, CODER_USER, WRITER

Client = TestClient[Any, Any]


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def _error(response: Any, status: int, code: str) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


# --- auth -------------------------------------------------------------------------------


async def test_every_admin_route_needs_the_token(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    for method, path in [
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/status"),
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            response = await client.request(method, path, headers=headers)
            await _error(response, 401, "unauthorized")
    assert (await client.get("/healthz")).status == 200


# --- agents -------------------------------------------------------------------------------


async def test_agents_show_status_from_heartbeats(rc: tuple[ApiRig, Client]) -> None:
    rig, client = rc
    await rig.beat(CODER, "busy")
    await rig.beat(WRITER, "online", age_s=3600)  # older than its TTL: offline

    response = await client.get("/api/v1/agents", headers=AUTH)
    assert response.status == 200
    agents = {a["id"]: a for a in (await response.json())["agents"]}
    assert set(agents) == {"coder", "writer"}
    coder = agents["coder"]
    assert coder["status"] == "busy"
    assert coder["user_id"] == CODER_USER
    assert coder["room_id"] == rig.rooms[CODER]
    assert coder["room_alias"] == "#salon-coder:localhost"
    assert coder["label"] == "Coder" and coder["description"] == "Writes code"
    assert coder["gateway"] == "test-gw" and coder["last_beat_ms"] > 0
    assert agents["writer"]["status"] == "offline"

    one = await client.get("/api/v1/agents/coder", headers=AUTH)
    assert (await one.json()) == coder


async def test_an_agent_that_never_beat_is_offline_and_an_unreadable_one_unknown(
    rc: tuple[ApiRig, Client],
) -> None:
    rig, client = rc
    assert (await (await client.get("/api/v1/agents/coder", headers=AUTH)).json())[
        "status"
    ] == "offline"
    rig.hs.down = True
    view = await (await client.get("/api/v1/agents/coder", headers=AUTH)).json()
    assert view["status"] == "unknown" and "unreachable" in view["status_error"]


async def test_unknown_agent_is_404_naming_the_known(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    message = await _error(
        await client.get("/api/v1/agents/nobody", headers=AUTH), 404, "agent_not_found"
    )
    assert "nobody" in message and "coder" in message and "writer" in message
