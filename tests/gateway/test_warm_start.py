"""A warm start takes each agent's rooms from the store (no request per agent), and
checks them once ready: an agent that lost its room or the lobby while the gateway
was down is put back (the fake homeserver here; the real one in
tests/integration/test_appservice_warm.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import ALICE, ROUTER, SERVER, open_store

from salon.app.warm_start import kept_facts
from salon.config.models import SalonConfig
from salon.gateway.bootstrap import Topology, bootstrap, ensure_agent_room
from salon.gateway.warm import Unchecked, check_after_start, load_facts, save_facts
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.appservice import AppserviceSource
from salon.matrix.as_events import Members
from salon.matrix.space import SpaceManager
from salon.metrics import WARM_DRIFT
from salon.store import Store

AGENTS = 6
ASKING = ("joined_rooms", "memberships", "get_state_event", "resolve_alias", "join")


def _config() -> SalonConfig:
    agents: dict[str, Any] = {f"a{i}": {"label": f"A{i}", "backend": "echo"} for i in range(AGENTS)}
    return SalonConfig.model_validate(
        {"homeserver": {"url": "http://127.0.0.1:8008", "server_name": SERVER}, "agents": agents}
    )


class _Deployment:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.hs = FakeHomeserver(SERVER)
        self.config = _config()
        self.agents: dict[AgentId, Any] = {}

    async def start(self, invite: list[UserId], topology: Topology | None = None) -> Topology:
        """A start; ``topology``: the last one's, whose facts it takes (a warm start)."""
        router = self.hs.api(ROUTER)
        self.agents = {
            AgentId(a): self.hs.api(self.config.agent_user_id(a, SERVER))
            for a in self.config.agents
        }
        apis = cast("dict[AgentId, MatrixAPI]", self.agents)
        kept = topology.facts if topology is not None else None
        spaces = SpaceManager(cast(MatrixAPI, router))
        return await bootstrap(self.config, spaces, apis, self.store, invite, (), kept)

    def asked(self, agent: AgentId) -> list[str]:
        return [name for name, _ in self.agents[agent].calls if name in ASKING]


async def test_a_warm_start_asks_no_agent_anything(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    deployment = _Deployment(store)
    cold = await deployment.start([ALICE])
    assert cold.taken == {} and cold.facts is not None
    warm = await deployment.start([ALICE], cold)
    assert warm.taken == cold.agent_rooms == warm.agent_rooms
    assert {a: deployment.asked(a) for a in deployment.agents} == {a: [] for a in deployment.agents}
    # Other people to invite: the kept facts are not this deployment's; all are asked.
    other = await deployment.start([ALICE, UserId("@bob:localhost")], warm)
    assert other.taken == {}
    assert all("joined_rooms" in deployment.asked(a) for a in deployment.agents)
    await store.close()


async def test_drift_while_down_is_repaired_after_the_start(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    deployment = _Deployment(store)
    cold = await deployment.start([ALICE])
    # While the gateway is down: a0's room is removed (its alias gone, a0 out of it),
    # a1 leaves the lobby.
    a0, a1 = AgentId("a0"), AgentId("a1")
    old_room = cold.agent_rooms[a0]
    deployment.hs.aliases.pop(f"#{deployment.config.agent_room_alias_localpart(a0)}:{SERVER}")
    await deployment.agents[a0].leave(old_room)
    await deployment.agents[a1].leave(cold.lobby_id)
    warm = await deployment.start([ALICE], cold)
    assert set(warm.taken) == set(deployment.agents)  # the facts still say joined
    members = Members(ROUTER, lambda _: True)
    before = {k: WARM_DRIFT.labels(kind=k)._value.get() for k in ("own_room", "lobby")}

    async def relearn(api: MatrixAPI) -> set[RoomId]:
        rooms = set(await api.joined_rooms())
        members.reset(api.user_id, rooms)
        return rooms

    async def repair(agent_id: AgentId, rooms: set[RoomId]) -> RoomId:
        api = cast(MatrixAPI, deployment.agents[agent_id])
        return await ensure_agent_room(
            deployment.config, agent_id, api, store, warm.lobby_id, [ALICE], joined=rooms
        )

    moved: dict[AgentId, RoomId] = {}
    identities = [(a, cast(MatrixAPI, api)) for a, api in deployment.agents.items()]
    unchecked = Unchecked(warm.taken, warm.lobby_id, moved.__setitem__)
    assert await check_after_start(identities, unchecked, relearn, repair) == 2
    # a0 has a new room (the running agent moves there), a1 is back in the lobby.
    assert set(moved) == {a0} and moved[a0] != old_room
    for agent, api in deployment.agents.items():
        room = moved.get(agent, warm.agent_rooms[agent])
        assert {room, warm.lobby_id} <= set(await api.joined_rooms()), agent
        # Relearnt (what the repair joins comes in the transactions, not here).
        assert members.joined(api.user_id, room) == (agent not in moved), agent
    after = {k: WARM_DRIFT.labels(kind=k)._value.get() for k in ("own_room", "lobby")}
    assert after == {"own_room": before["own_room"] + 1, "lobby": before["lobby"] + 1}
    await store.close()


async def test_facts_are_kept_and_read_back(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    deployment = _Deployment(store)
    cold = await deployment.start([ALICE])
    assert cold.facts is not None
    assert await load_facts(store.kv, ROUTER) is None
    await save_facts(store.kv, ROUTER, cold.facts)
    assert await load_facts(store.kv, ROUTER) == cold.facts
    await store.kv.set(f"warm:{ROUTER}", "{not json")
    assert await load_facts(store.kv, ROUTER) is None  # unreadable: a cold start
    await store.close()


def test_members_reset_forgets_rooms_left() -> None:
    members = Members(ROUTER, lambda _: True)
    user = UserId("@salon_a0:localhost")
    members.seed(user, ["!a", "!b"])
    members.reset(user, ["!b", "!c"])
    assert not members.joined(user, RoomId("!a"))
    assert members.joined(user, RoomId("!b")) and members.joined(user, RoomId("!c"))
    assert members.by_user() == {user: {"!b", "!c"}}


async def test_only_facts_kept_at_a_clean_stop_are_taken(tmp_path: Path) -> None:
    """A run killed (-9) never wrote its rooms: the rooms it joined are not in the
    facts, and a room unknown at start would have its events read as the router.
    Taken once, the facts are marked unclean until this run stops."""
    store = await open_store(tmp_path)
    cold = await _Deployment(store).start([ALICE])
    assert cold.facts is not None
    source = AppserviceSource("hs-token", store.appservice_txns, router=ROUTER, owns=bool)
    await save_facts(store.kv, ROUTER, replace(cold.facts, clean=True))
    assert await kept_facts(source, store, ROUTER) == replace(cold.facts, clean=True)
    # Killed now: the next start takes nothing.
    assert await kept_facts(source, store, ROUTER) is None
    await store.close()
