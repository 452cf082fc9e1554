"""Two `salon run` processes in appservice mode on one PostgreSQL store behind one
appservice URL: a round-robin proxy (a load balancer) hands each transaction Synapse
pushes to either gateway, which admits it into the shared inbox; whichever process
claims the room answers. Every message is answered exactly once, also when one
gateway is killed with -9 midway (the other finishes what it had claimed)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml
from aiohttp import web

from salon.config.models import SalonConfig
from salon.devserver.appservice import write_registration
from salon.devserver.synapse import free_port
from salon.store.kv import GATEWAY_STATUS_KEY

from ..conftest import TestHomeserver, register_user
from .conftest import Person, salon_config
from .test_appservice import SECRETS, TOKENS
from .test_crash import _replies_by_question, running

AGENTS = ("a1", "a2", "a3", "a4")
PER_AGENT = 6
LEASE_S = 2


class RoundRobin:
    """A tiny HTTP load balancer: each request to the next backend in turn, the next one
    tried when a backend does not answer at all (as a proxy's health checks would)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.turn = itertools.cycle(range(len(backends)))
        self.served: dict[int, int] = dict.fromkeys(backends, 0)
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert self.session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        error: Exception | None = None
        for _ in self.backends:
            port = self.backends[next(self.turn)]
            url = f"http://127.0.0.1:{port}{request.path_qs}"
            try:
                async with self.session.request(
                    request.method, url, data=body, headers=headers
                ) as answer:
                    payload = await answer.read()
                    self.served[port] += 1
                    return web.Response(
                        status=answer.status, body=payload, content_type=answer.content_type
                    )
            except aiohttp.ClientConnectionError as e:
                error = e
        return web.Response(status=502, text=f"no backend: {error}")


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[int, Callable[[list[int]], RoundRobin]]]:
    """A free port for the proxy, and a function starting it on backends' ports."""
    port = free_port()
    balancers: list[RoundRobin] = []

    def start(backends: list[int]) -> RoundRobin:
        balancer = RoundRobin(backends)
        balancers.append(balancer)
        return balancer

    yield port, start
    for balancer in balancers:
        if balancer.session is not None:
            await balancer.session.close()


async def _serve(balancer: RoundRobin, port: int) -> web.AppRunner:
    balancer.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", balancer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _rows(pg_url: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(pg_url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _status_pid(pg_url: str) -> int:
    rows = await _rows(pg_url, f"SELECT value FROM kv WHERE key = '{GATEWAY_STATUS_KEY}'")
    return int(json.loads(rows[0]["value"])["pid"])


def _base(tmp_path: Path, pg_url: str) -> dict[str, Any]:
    """The settings both gateways share (one namespace, drawn once)."""
    placeholder = SimpleNamespace(
        base_url="http://127.0.0.1:9", server_name="localhost", shared_secret=""
    )
    base = salon_config(
        placeholder,
        tmp_path,
        agents={a: {"backend": {"type": "echo", "delay_s": 1.0}} for a in AGENTS},
        store={"url": pg_url},
        cluster={"lease_s": LEASE_S},
        # Both open the same stored encryption keys: one pickle key, not one per data dir.
        encryption={"pickle_key_env": "SALON_TEST_PICKLE_KEY"},
    )
    data = base.model_dump(mode="json", exclude_none=True)
    data["agents"] = {a: v for a, v in data["agents"].items() if a in AGENTS}
    return data


def _configs(
    tmp_path: Path, data: dict[str, Any], hs: Any, proxy_port: int, ports: list[int]
) -> tuple[list[Path], SalonConfig]:
    """Both gateways' configs (each its own listener) on ``hs``; the registration's URL
    is the proxy's."""
    paths = []
    for n, port in enumerate(ports):
        data["homeserver"] = {
            "url": hs.base_url,
            "server_name": hs.server_name,
            "mode": "appservice",
            "appservice": {"listen": f"127.0.0.1:{port}", "url": f"http://127.0.0.1:{proxy_port}"},
        }
        path = tmp_path / f"gateway{n}.yaml"
        path.write_text(yaml.safe_dump({**data, "data_dir": str(tmp_path / f"g{n}")}))
        paths.append(path)
    return paths, SalonConfig.model_validate(yaml.safe_load(paths[0].read_text()))


async def test_two_appservice_gateways_behind_one_url_answer_each_message_once(
    tmp_path: Path,
    synapse_factory: Callable[..., TestHomeserver],
    http: aiohttp.ClientSession,
    pg_url: str,
    proxy: tuple[int, Callable[[list[int]], RoundRobin]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy_port, make_proxy = proxy
    ports = [free_port(), free_port()]
    data = _base(tmp_path, pg_url)
    placeholder = SimpleNamespace(base_url="http://127.0.0.1:9", server_name="localhost")
    _, draft = _configs(tmp_path, data, placeholder, proxy_port, ports)
    registration = tmp_path / "registration.yaml"
    write_registration(draft, registration, tmp_path / "registration.env", TOKENS)
    hs = synapse_factory(app_service_config_files=(registration,))
    person = Person(await register_user(hs), hs.base_url, http)
    data["access"] = {**data["access"], "admins": [person.user_id]}  # invited to agent rooms
    paths, config = _configs(tmp_path, data, hs, proxy_port, ports)
    balancer = make_proxy(ports)
    runner = await _serve(balancer, proxy_port)
    for name, value in {**SECRETS, "SALON_TEST_PICKLE_KEY": "k" * 32}.items():
        monkeypatch.setenv(name, value)
    questions = {a: [f"{a}-q{i}" for i in range(PER_AGENT)] for a in AGENTS}
    rooms: dict[str, str] = {}
    try:
        with running(paths[0]) as first:
            await asyncio.to_thread(first.wait_ready)  # the proxy serves meanwhile
            with running(paths[1]) as second:
                await asyncio.to_thread(second.wait_ready)
                # One process (the leader, the first) publishes the status for all.
                publishers = set()
                for _ in range(14):  # over more than two publishing periods (5 s)
                    publishers.add(await _status_pid(pg_url))
                    await asyncio.sleep(0.5)
                assert publishers == {first.proc.pid}, publishers
                for agent in AGENTS:
                    alias = f"#{config.agent_room_alias_localpart(agent)}:localhost"
                    rooms[agent] = await person.join(alias)
                for i in range(PER_AGENT):
                    for agent in AGENTS:
                        await person.say(rooms[agent], questions[agent][i])
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    done = await _rows(pg_url, "SELECT 1 FROM turns WHERE state = 'replied'")
                    if len(done) >= len(AGENTS) * PER_AGENT // 3:
                        break
                    await asyncio.sleep(0.2)
                owners = await _rows(
                    pg_url, "SELECT DISTINCT owner FROM turns WHERE owner IS NOT NULL"
                )
                assert len(owners) == 2, "both gateways took work"
                first_owner = next(
                    r["owner"] for r in owners if f"-{first.proc.pid}-" in r["owner"]
                )
                held = await _rows(
                    pg_url,
                    "SELECT 1 FROM turns WHERE state IN ('admitted', 'running')"
                    f" AND owner = '{first_owner}'",
                )
                assert held, "the first gateway had claimed turns when it was killed"
                first.kill()
                deadline = time.monotonic() + 90
                answers: list[dict[str, list[str]]] = []
                while time.monotonic() < deadline:
                    answers = [await _replies_by_question(person, rooms[a]) for a in AGENTS]
                    if all(all(x.values()) and len(x) == PER_AGENT for x in answers):
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(3)  # room for a duplicate to show up, if there were one
                for agent in AGENTS:
                    got = await _replies_by_question(person, rooms[agent])
                    assert got == {q: [q] for q in questions[agent]}, "".join(second.lines[-60:])
    finally:
        await runner.cleanup()
    # Both gateways admitted transactions through the one URL.
    assert all(balancer.served[p] > 0 for p in ports), balancer.served
    admitted = await _rows(pg_url, "SELECT COUNT(*) AS n FROM appservice_txns")
    assert admitted[0]["n"] >= 2
    turns = await _rows(pg_url, "SELECT state FROM turns")
    assert len(turns) == len(AGENTS) * PER_AGENT
    assert {r["state"] for r in turns} == {"replied"}
