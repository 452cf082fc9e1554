"""The admin API, metrics and health of a real gateway on a real Synapse, over real HTTP.

The gateway's API listens on a free loopback port with a token; the operator is a
registered user the API posts as (it is in no room at first: the router brings it in).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.api.openapi_walk import app_routes, operations, walk

from salon.api.openapi import document
from salon.app.gateway import Gateway
from salon.devserver.synapse import SynapseProcess
from salon.matrix.registration import Credentials

from ..conftest import TestHomeserver, register_user, start_synapse
from .conftest import salon_config

TOKEN_ENV = "SALON_TEST_API_TOKEN"
OPERATOR_ENV = "SALON_TEST_OPERATOR_TOKEN"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Api:
    """A running gateway's API, and an HTTP session to call it with."""

    gateway: Gateway
    base: str
    token: str
    http: aiohttp.ClientSession

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.get(self.base + path, headers=self.auth, **kwargs) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.http.post(self.base + path, json=body, headers=self.auth) as r:
            return r.status, await r.json()


async def start_api_gateway(
    homeserver: Any,
    tmp_path: Path,
    operator: Credentials,
    monkeypatch: pytest.MonkeyPatch,
    start: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
    **overrides: Any,
) -> Api:
    token = secrets.token_urlsafe(16)
    monkeypatch.setenv(TOKEN_ENV, token)
    monkeypatch.setenv(OPERATOR_ENV, operator.access_token)
    config = salon_config(
        homeserver,
        tmp_path,
        api={
            "listen": f"127.0.0.1:{free_port()}",
            "token_env": TOKEN_ENV,
            "operator_user_id": operator.user_id,
            "operator_token_env": OPERATOR_ENV,
            "a2a": True,  # every documented route is served (the OpenAPI walk calls them)
        },
        **overrides,
    )
    gateway = await start(config)
    assert gateway.api is not None
    return Api(gateway, gateway.api.url, token, http)


@pytest.fixture
async def api(
    synapse: TestHomeserver,
    tmp_path: Path,
    new_user: Callable[..., Awaitable[Credentials]],
    monkeypatch: pytest.MonkeyPatch,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> Api:
    agents = {
        "echo": {"label": "Echo", "backend": {"type": "echo"}, "can_delegate_to": ["parrot"]},
        "parrot": {"label": "Parrot", "backend": {"type": "echo", "prefix": "🦜 "}},
    }
    return await start_api_gateway(
        synapse, tmp_path, await new_user(), monkeypatch, gateways, http, agents=agents
    )


async def test_send_and_wait_returns_the_agents_reply(api: Api) -> None:
    status, body = await api.post(
        "/api/v1/messages",
        {"to": "parrot", "text": "hello from the API", "wait": True, "timeout_s": 30},
    )
    assert status == 200, body
    assert body["reply"]["text"] == "🦜 hello from the API"
    assert body["reply"]["agent"] == "parrot" and body["reply"]["state"] == "replied"
    assert body["routed"] == "agent_room"
    # The room shows the exchange, newest last.
    status, read = await api.get("/api/v1/rooms/parrot/messages?limit=2")
    assert status == 200, read
    assert [(m["body"], m["agent"]) for m in read["messages"]] == [
        ("hello from the API", None),
        ("🦜 hello from the API", "parrot"),
    ]
    assert read["messages"][0]["event_id"] == body["event_id"]


async def test_a_spawned_agent_is_reachable_through_the_api(api: Api) -> None:
    """The API reads the gateway's live agent maps, not copies made at start."""
    status, spawned = await api.post(
        "/api/v1/agents/spawn", {"from": "parrot", "ttl_s": 600, "name": "helper"}
    )
    assert status == 201, spawned
    assert spawned["room_id"] == api.gateway.state.topology.agent_rooms["helper"]  # type: ignore[union-attr,index]
    status, body = await api.post(
        "/api/v1/messages", {"to": "helper", "text": "are you new?", "wait": True, "timeout_s": 30}
    )
    assert status == 200, body
    assert body["reply"]["text"] == "🦜 are you new?" and body["reply"]["agent"] == "helper"
    status, read = await api.get("/api/v1/rooms/helper/messages?limit=2")
    assert status == 200, read
    assert [m["agent"] for m in read["messages"]] == [None, "helper"]


async def test_agents_status_and_delegation(api: Api) -> None:
    deadline = time.monotonic() + 15
    while True:  # the first heartbeats go out just after the gateway is up
        status, body = await api.get("/api/v1/agents")
        assert status == 200, body
        agents = {a["id"]: a for a in body["agents"]}
        assert set(agents) == {"echo", "parrot"}
        if all(a["status"] == "online" for a in agents.values()):
            break
        assert time.monotonic() < deadline, agents
        await asyncio.sleep(0.2)
    assert agents["parrot"]["room_alias"].startswith("#salon-")

    status, outcome = await api.post(
        "/api/v1/delegations",
        {"from": "echo", "to": "parrot", "task": "repeat after me", "timeout_s": 30},
    )
    assert status == 200, outcome
    assert outcome["ok"] is True and outcome["text"] == "🦜 repeat after me"
    assert outcome["id"]
    status, report = await api.get("/api/v1/status")
    assert status == 200, report
    assert report["delegations"] == []  # it ended
    assert report["store"]["ok"] and report["homeserver"]["ok"] and report["loops_ok"]


async def test_a_request_without_the_token_is_401(api: Api) -> None:
    for path in ("/api/v1/agents", "/metrics", "/readyz", "/v1/models"):
        async with api.http.get(api.base + path) as response:
            assert response.status == 401, path
            assert (await response.json())["error"]["code"] == "unauthorized"
        async with api.http.get(
            api.base + path, headers={"Authorization": "Bearer not-the-token"}
        ) as response:
            assert response.status == 401, path
    async with api.http.post(
        api.base + "/api/v1/messages", json={"to": "echo", "text": "sneaky"}
    ) as response:
        assert response.status == 401
    async with api.http.get(api.base + "/healthz") as response:
        assert response.status == 200


async def _turns(api: Api, agent: str) -> float:
    status, text = await api.get("/metrics")
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "salon_turns_total" and sample.labels.get("agent") == agent:
                total += sample.value
    return total


async def test_metrics_count_one_turn_per_turn(api: Api) -> None:
    before = await _turns(api, "echo")
    for n in (1, 2):
        status, body = await api.post(
            "/api/v1/messages", {"to": "echo", "text": f"count me {n}", "wait": True}
        )
        assert status == 200 and body["reply"]["text"] == f"count me {n}", body
        # The counter moves as the turn closes: at most a moment after the ledger says so.
        deadline = time.monotonic() + 5
        while (seen := await _turns(api, "echo")) < before + n:
            assert time.monotonic() < deadline, f"turn {n} not counted"
            await asyncio.sleep(0.05)
        assert seen == before + n
    await asyncio.sleep(0.5)
    assert await _turns(api, "echo") == before + 2


async def test_the_openapi_document_matches_the_server(api: Api) -> None:
    status, doc = await api.get("/api/v1/openapi.json")
    assert status == 200 and doc == document()
    assert api.gateway.api is not None
    served = app_routes(api.gateway.api.app)
    assert served == operations(doc)
    wrong = await walk(api.http, api.base, doc, api.token, {"agent_id": "echo", "model": "echo"})
    assert wrong == []


# --- readiness while the homeserver goes away ---------------------------------------------


@contextmanager
def _own_synapse(tmp_path: Path) -> Iterator[tuple[TestHomeserver, SynapseProcess]]:
    """A Synapse of this test alone (stopping it disturbs no other test)."""
    with start_synapse(tmp_path / "synapse") as homeserver:
        assert homeserver.process is not None
        yield homeserver, homeserver.process


async def _ready_becomes(api: Api, ready: bool, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await api.get("/readyz")
        assert status in (200, 503), body
        assert body["ready"] is (status == 200)
        if body["ready"] is ready:
            return dict(body)
        assert time.monotonic() < deadline, f"/readyz stayed {status}: {body}"
        await asyncio.sleep(0.25)


@pytest.fixture
async def own_homeserver(tmp_path: Path) -> AsyncIterator[tuple[TestHomeserver, SynapseProcess]]:
    with _own_synapse(tmp_path) as pair:
        yield pair


async def test_readyz_follows_the_homeserver(
    own_homeserver: tuple[TestHomeserver, SynapseProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    homeserver, synapse = own_homeserver
    operator = await register_user(homeserver)
    api = await start_api_gateway(homeserver, tmp_path, operator, monkeypatch, gateways, http)
    ready = await _ready_becomes(api, True, 20)
    assert ready["problems"] == []

    await asyncio.to_thread(synapse.stop)
    try:
        down = await _ready_becomes(api, False, 20)
        assert down["checks"]["homeserver"]["ok"] is False, down
        assert "homeserver: " in " ".join(down["problems"])
        async with http.get(api.base + "/healthz") as response:
            assert response.status == 200  # alive, just not ready
    finally:
        await asyncio.to_thread(synapse.start)
    back = await _ready_becomes(api, True, 60)
    assert back["checks"]["homeserver"] == {"ok": True}
    assert back["checks"]["loops"]["failing"] == []
