"""Appservice mode's warm start against a real Synapse: the second start takes each
agent's rooms from the store (asking no agent its rooms), and what changed while
the gateway was down is repaired once it is ready: an agent that left the lobby
joins it again, an agent whose room was removed gets a new one and answers there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp

from salon.app.gateway import Gateway
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.metrics import WARM_DRIFT

from ..conftest import TestHomeserver
from .modes import SECRETS, TOKENS, appservice_deployment


def _drift(kind: str) -> float:
    return float(WARM_DRIFT.labels(kind=kind)._value.get())


async def test_a_warm_start_repairs_what_changed_while_down(
    tmp_path: Path,
    synapse_factory: Callable[..., TestHomeserver],
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    deployment = appservice_deployment(tmp_path, synapse_factory)
    hs, config = deployment.hs, deployment.base
    person = await deployment.person(http)
    first = await gateways(config, invite=[person.user_id], secrets=SECRETS)
    assert first.state is not None
    topology = first.state.topology
    parrot_room = str(topology.agent_rooms["parrot"])
    await first.stop()

    # While the gateway is down: echo leaves the lobby; parrot's room is removed (its
    # alias deleted, parrot out of it), as the appservice acting as each agent.
    def as_agent(agent: str) -> MatrixAPI:
        user = UserId(config.agent_user_id(agent, hs.server_name))
        return MatrixAPI(hs.base_url, user, TOKENS[0], session=http, as_user_id=user)

    await as_agent("echo").leave(topology.lobby_id)
    parrot = as_agent("parrot")
    alias = f"#{config.agent_room_alias_localpart('parrot')}:{hs.server_name}"
    url = f"{hs.base_url}/_matrix/client/v3/directory/room/{quote(alias)}"
    headers = {"Authorization": f"Bearer {TOKENS[0]}"}
    async with http.delete(url, params={"user_id": parrot.user_id}, headers=headers) as r:
        assert r.status == 200, await r.text()
    await parrot.leave(RoomId(parrot_room))
    lobby_before, room_before = _drift("lobby"), _drift("own_room")

    second = await gateways(config, invite=[person.user_id], secrets=SECRETS)
    assert second._running is not None
    # Taken from the store as the first start left them: nobody asked, all unchecked.
    assert set(second._running.state.topology.taken) == set(config.agents)

    # Once ready, the check finds both and repairs them.
    deadline = time.monotonic() + 60
    while _drift("lobby") < lobby_before + 1 or _drift("own_room") < room_before + 1:
        assert time.monotonic() < deadline, (_drift("lobby"), _drift("own_room"))
        await asyncio.sleep(0.2)
    echo = as_agent("echo")
    deadline = time.monotonic() + 30
    while topology.lobby_id not in await echo.joined_rooms():
        assert time.monotonic() < deadline, "echo is not back in the lobby"
        await asyncio.sleep(0.2)
    hosted = second._running.hosted
    while str(hosted.rooms["parrot"]) == parrot_room:  # made again: the agent moves there
        assert time.monotonic() < deadline, "parrot's room was not made again"
        await asyncio.sleep(0.2)
    new_room = str(hosted.rooms["parrot"])
    # Parrot answers in its new room (found by its alias), echo in its own.
    room_id = await person.join(alias)
    assert room_id == new_room
    asked = await person.say(room_id, "still there?")
    reply = await person.wait_reply(room_id, asked)
    assert reply["sender"] == parrot.user_id
    echo_room = await person.join(str(topology.agent_rooms["echo"]))
    asked = await person.say(echo_room, "and you?")
    assert (await person.wait_reply(echo_room, asked))["sender"] == echo.user_id
