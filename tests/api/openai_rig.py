"""The OpenAI-compatible routes on a real turn runner, for the tests to call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import openai
from aiohttp.test_utils import TestServer
from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import (
    CODER,
    CODER_USER,
    SERVER,
    WRITER,
    WRITER_USER,
    ScriptedBackend,
    make_config,
    make_roster,
    open_store,
)

from salon.agents.profile import AgentProfile
from salon.agents.runtime import AgentRuntime
from salon.api.context import ApiContext
from salon.api.server import build_app
from salon.ids import AgentId
from salon.routing.router import Router
from salon.store import Store
from salon.turns.runner import TurnRunner
from salon.turns.settings import TurnSettings
from salon.turns.slots import TurnSlots
from salon.turns.spec import TurnPolicy

TOKEN = "unit-test-token"


@dataclass
class Rig:
    """The OpenAI routes of one app over a runner for ``coder`` and ``writer``."""

    server: TestServer
    store: Store
    runner: TurnRunner
    backends: dict[AgentId, ScriptedBackend]
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/v1"))

    def client(self, **options: Any) -> openai.AsyncOpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("api_key", TOKEN)
        client = openai.AsyncOpenAI(base_url=self.base_url, **options)
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.close()

    async def post(
        self, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        """A raw POST to /v1/chat/completions: status, headers, body text."""
        auth = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            **(headers or {}),
        }
        data = body if isinstance(body, str) else json.dumps(body)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.base_url}/chat/completions", data=data, headers=auth) as resp,
        ):
            return resp.status, dict(resp.headers), await resp.text()

    def watched(self) -> int:
        return len(self.runner.watchers._by_key)


MakeRig = Callable[..., Awaitable[Rig]]


async def rig_maker(tmp_path: Path) -> AsyncIterator[MakeRig]:
    """Yields ``make(coder=, writer=, policy=)``, which builds a :class:`Rig`; then
    closes everything it built (for a ``make_rig`` fixture)."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(
        coder: ScriptedBackend | None = None,
        writer: ScriptedBackend | None = None,
        policy: TurnPolicy | None = None,
        slots: TurnSlots | None = None,
    ) -> Rig:
        store = await open_store(tmp_path)
        cleanups.append(store.close)
        config = make_config()
        roster = make_roster(config)
        backends = {
            CODER: coder or ScriptedBackend(chunks=("Hi ", "there")),
            WRITER: writer or ScriptedBackend(chunks=("prose",)),
        }
        runtimes = {
            a: AgentRuntime(
                AgentProfile(a, roster.member(a).label, "", home=tmp_path / a),
                backend,
                store.sessions,
            )
            for a, backend in backends.items()
        }
        hs = FakeHomeserver(SERVER)
        apis = {CODER: hs.api(CODER_USER), WRITER: hs.api(WRITER_USER)}
        runner = TurnRunner(
            store, runtimes, apis, settings=TurnSettings(policy=policy or TurnPolicy()), slots=slots
        )
        ctx = ApiContext(
            gateway="unit",
            roster=roster,
            store=store,
            runner=runner,
            router=Router.from_config(config, roster),
            delegations=cast(Any, None),
            router_api=cast(Any, None),
            agent_apis={},
            agent_rooms={},
            lobby_id="",
            loops=list,
        )
        server = TestServer(build_app(ctx, TOKEN), host="127.0.0.1")
        await server.start_server()
        cleanups.append(server.close)
        cleanups.append(runner.stop)
        rig = Rig(server, store, runner, backends)
        cleanups.append(rig.close_clients)
        return rig

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()


def _events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
