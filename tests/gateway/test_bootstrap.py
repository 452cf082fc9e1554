"""Start-up provisioning stays linear in the number of agents: agents are not invited
into each other's rooms up front (N² invitations; at 100 agents Synapse took more than
30 s to answer one request), but by a room's owner when they visit it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import ALICE, ROUTER, SERVER, open_store

from salon.config.models import SalonConfig
from salon.gateway.bootstrap import bootstrap
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.membership import join_or_be_invited
from salon.matrix.space import SpaceManager

AGENTS = 12
PEER = UserId("@salon_far:elsewhere")


def _config(n: int) -> SalonConfig:
    agents: dict[str, Any] = {f"a{i}": {"label": f"A{i}", "backend": "echo"} for i in range(n)}
    return SalonConfig.model_validate(
        {"homeserver": {"url": "http://127.0.0.1:8008", "server_name": SERVER}, "agents": agents}
    )


def _invitations(apis: list[Any]) -> int:
    """Invitations sent: by invite, and in create_room's invite list."""
    sent = 0
    for api in apis:
        sent += len(api.calls_to("invite"))
        sent += sum(len(c["invite"] or ()) for c in api.calls_to("create_room"))
    return sent


async def test_provisioning_invites_people_and_peers_not_every_agent(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver(SERVER)
    config = _config(AGENTS)
    router = hs.api(ROUTER)
    agents = {AgentId(a): hs.api(config.agent_user_id(a, SERVER)) for a in config.agents}
    apis = cast("dict[AgentId, MatrixAPI]", agents)

    topology = await bootstrap(
        config, SpaceManager(cast(MatrixAPI, router)), apis, store, [ALICE], peers=[PEER]
    )

    # Linear: the Space and lobby (each agent, the person), and each agent room (the
    # person and the peer). The N² path sent AGENTS * (AGENTS - 1) more.
    assert _invitations([router, *agents.values()]) <= 3 * AGENTS + 2
    room = hs.room(topology.agent_rooms[AgentId("a0")])
    assert room.members[ALICE] == "invite" and room.members[str(PEER)] == "invite"
    assert str(agents[AgentId("a1")].user_id) not in room.members
    # A visit still works: the owner invites the visitor when it comes.
    visitor = agents[AgentId("a1")]
    await join_or_be_invited(
        cast(MatrixAPI, visitor), RoomId(room.room_id), cast(MatrixAPI, agents[AgentId("a0")])
    )
    assert room.members[str(visitor.user_id)] == "join"
    await store.close()


async def test_a_warm_start_asks_each_agent_little(tmp_path: Path) -> None:
    """A thousand agents at each start: every request per agent costs seconds. A cold
    start asks nobody for the members of a room it just made; a warm one finds each
    agent's room in the store (no alias look-up) and asks each agent its rooms once."""
    store = await open_store(tmp_path)
    hs = FakeHomeserver(SERVER)
    config = _config(AGENTS)

    async def start() -> list[Any]:
        router = hs.api(ROUTER)
        agents = {AgentId(a): hs.api(config.agent_user_id(a, SERVER)) for a in config.agents}
        apis = cast("dict[AgentId, MatrixAPI]", agents)
        await bootstrap(config, SpaceManager(cast(MatrixAPI, router)), apis, store, [ALICE])
        return list(agents.values())

    cold = await start()
    assert sum(len(a.calls_to("memberships")) for a in cold) == 0
    warm = await start()
    assert sum(len(a.calls_to("resolve_alias")) for a in warm) == 0
    assert all(len(a.calls_to("joined_rooms")) == 1 for a in warm), [
        len(a.calls_to("joined_rooms")) for a in warm
    ]
    await store.close()
