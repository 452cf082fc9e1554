"""A fake gateway for unit tests of the admin, health and metrics routes.

The API's context on a fake homeserver and a real SQLite store: the router, two
agents (coder, writer) with their rooms and heartbeats, a lobby, and an operator
who is in no room yet (the API must bring it in). The gateway's own work (routing
a message, running its turn) is played by :meth:`ApiRig.answer`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiohttp.test_utils import TestClient, TestServer
from tests.fake_matrix import JSON, FakeHomeserver, FakeMatrixAPI
from tests.gateway.helpers import (
    ALICE,
    CODER,
    CODER_USER,
    ROUTER,
    SERVER,
    WRITER,
    WRITER_USER,
    make_roster,
    open_store,
)

from salon.agents.tools import DelegationOutcome
from salon.api.context import ApiContext, LoopState
from salon.api.server import build_app
from salon.coordination.delegation import DelegationManager
from salon.coordination.heartbeat import AGENT_STATE
from salon.ids import RoomId
from salon.matrix.api import MatrixAPI
from salon.routing.router import Router
from salon.store import Store
from salon.store.records import InboxItem, InboxState, TurnState
from salon.store.saved import Decision
from salon.turns.runner import TurnRunner

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class FakeRunner:
    """What the API asks of the turn runner."""

    running: list[tuple[str, str]] = field(default_factory=list)
    agents: dict[str, Any] = field(default_factory=dict)

    def in_flight(self) -> list[tuple[str, str]]:
        return list(self.running)


@dataclass
class FakeDelegations:
    """A delegation manager that answers at once (or after ``delay``) and records calls."""

    store: Store
    outcome: DelegationOutcome = field(default_factory=lambda: DelegationOutcome(True, "done"))
    delay: float = 0.0
    deadline_s: float = 300.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    finished: int = 0

    async def delegate(self, from_agent: str, to_agent: str, task: str, **kwargs: Any) -> Any:
        self.calls.append({"from": from_agent, "to": to_agent, "task": task, **kwargs})
        if self.delay:
            await asyncio.sleep(self.delay)
        self.finished += 1
        return self.outcome


@dataclass
class ApiRig:
    store: Store
    hs: FakeHomeserver
    router: FakeMatrixAPI
    agents: dict[str, FakeMatrixAPI]
    operator: FakeMatrixAPI
    lobby: RoomId
    rooms: dict[str, RoomId]
    runner: FakeRunner
    delegations: FakeDelegations
    loops: list[LoopState]
    homeserver_up: bool = True
    ctx: ApiContext = field(init=False)

    @classmethod
    async def start(cls, tmp_path: Path, *, operator: bool = True) -> ApiRig:
        store = await open_store(tmp_path)
        hs = FakeHomeserver(SERVER)
        router = hs.api(ROUTER)
        agents: dict[str, FakeMatrixAPI] = {CODER: hs.api(CODER_USER), WRITER: hs.api(WRITER_USER)}
        lobby = await router.create_room(alias_localpart="lobby", invite=[CODER_USER, WRITER_USER])
        rooms: dict[str, RoomId] = {}
        for agent_id, api in agents.items():
            # As the gateway does: each agent makes its own room; the router stays out.
            room = await api.create_room(alias_localpart=f"salon-{agent_id}")
            await api.join(lobby)
            rooms[agent_id] = room
        rig = cls(
            store=store,
            hs=hs,
            router=router,
            agents=agents,
            operator=hs.api(ALICE),
            lobby=lobby,
            rooms=rooms,
            runner=FakeRunner(agents={"coder": None}),  # A2A serves running agents
            delegations=FakeDelegations(store),
            loops=[LoopState("sync:@salon:localhost", True, 0, False, None)],
        )

        async def homeserver_ok() -> bool:
            return rig.homeserver_up

        rig.ctx = ApiContext(
            gateway="test-gw",
            roster=make_roster(),
            store=store,
            runner=cast(TurnRunner, rig.runner),
            router=cast(Router, None),
            delegations=cast(DelegationManager, rig.delegations),
            router_api=router,
            agent_apis={a: cast(MatrixAPI, api) for a, api in agents.items()},
            agent_rooms={a: str(r) for a, r in rooms.items()},
            lobby_id=str(lobby),
            loops=lambda: list(rig.loops),
            operator=rig.operator if operator else None,
            homeserver_ok=homeserver_ok,
            a2a_served=lambda agent_id: True,
        )
        return rig

    async def beat(self, agent_id: str, status: str = "online", age_s: float = 0.0) -> None:
        """The agent's heartbeat, sent ``age_s`` ago."""
        api = self.agents[agent_id]
        content = {
            "v": 1,
            "status": status,
            "heartbeat_ts": int((time.time() - age_s) * 1000),
            "ttl_s": 60,
            "gateway": "test-gw",
            "agent": agent_id,
        }
        await api.send_state(self.rooms[agent_id], AGENT_STATE, content, api.user_id)

    def events(self, room_id: str) -> list[JSON]:
        return self.hs.messages_in(room_id)

    async def answer(
        self,
        agent_id: str,
        *,
        chunks: tuple[str, ...] = ("Hi", "Hi there"),
        state: TurnState = TurnState.REPLIED,
        notice: bool = False,
        routed_to: tuple[str, ...] | None = None,
        delay: float = 0.05,
    ) -> str:
        """Play the gateway once: wait for the operator's next message, route it to
        ``routed_to`` (default: ``agent_id``), and have ``agent_id`` reply with the first
        chunk and edit the reply to each following chunk. Returns the message's event id."""
        seen = {e["event_id"] for room in self.hs.rooms.values() for _, e in room.timeline}
        while True:
            mine = [
                (room.room_id, e)
                for room in self.hs.rooms.values()
                for _, e in room.timeline
                if e["sender"] == self.operator.user_id
                and e["type"] == "m.room.message"
                and e["event_id"] not in seen
            ]
            if mine:
                break
            await asyncio.sleep(0.01)
        room_id, message = mine[0]
        event_id = message["event_id"]
        await self.store.inbox.admit(
            [
                InboxItem(
                    event_id, room_id, str(self.operator.user_id), "m.room.message", "{}", 0, ROUTER
                )
            ]
        )
        agents = routed_to if routed_to is not None else (agent_id,)
        await self.store.decisions.record(
            Decision(event_id, room_id, agents, "agent_room", "", sender=self.operator.user_id)
        )
        await self.store.turns.admit(event_id, agent_id, room_id)
        await self.store.turns.start(event_id, agent_id)
        await asyncio.sleep(delay)
        api = self.agents[agent_id]
        msgtype = "m.notice" if notice else "m.text"
        reply_id = await api.send_event(
            RoomId(room_id),
            "m.room.message",
            {
                "msgtype": msgtype,
                "body": chunks[0],
                "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
            },
            txn_id=f"r-{event_id}",
        )
        await self.store.turns.set_reply(event_id, agent_id, reply_id)
        for i, chunk in enumerate(chunks[1:]):
            new = {"msgtype": msgtype, "body": chunk}
            await api.send_event(
                RoomId(room_id),
                "m.room.message",
                {
                    "msgtype": msgtype,
                    "body": f"* {chunk}",
                    "m.new_content": new,
                    "m.relates_to": {"rel_type": "m.replace", "event_id": reply_id},
                },
                txn_id=f"e{i}-{event_id}",
            )
        # A reaction after the reply, as a person might add.
        await api.send_event(
            RoomId(room_id),
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": reply_id, "key": "👍"}},
            txn_id=f"x-{event_id}",
        )
        await self.store.turns.finish(event_id, agent_id, state, reply_event_id=reply_id)
        await self.store.inbox.mark(event_id, InboxState.DONE, "agent_room")
        return event_id


async def api_client(ctx: ApiContext, token: str = TOKEN) -> TestClient[Any, Any]:
    """A test client of the whole app (every route module) on ``ctx``."""
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(ctx, token)))
    await client.start_server()
    return client


async def rig_and_client(
    tmp_path: Path, **options: Any
) -> AsyncIterator[tuple[ApiRig, TestClient[Any, Any]]]:
    """For a fixture: the rig and a client; both closed after."""
    rig = await ApiRig.start(tmp_path, **options)
    client = await api_client(rig.ctx)
    try:
        yield rig, client
    finally:
        await client.close()
        await rig.store.close()
