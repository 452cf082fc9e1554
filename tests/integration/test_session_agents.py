"""Session agents on a real Synapse: spawned from an existing agent, answering in their
own room in the Space, ended by the janitor after their TTL with the room kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salon.app.gateway import Gateway
from salon.cli.spawn import spawn_agent
from salon.coordination.heartbeat import AGENT_STATE
from salon.gateway.sessions import SESSION_STATE

from .conftest import Person, salon_config


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError("condition not met in time")


async def test_a_session_agent_answers_then_leaves_the_space_after_its_ttl(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path, access={"admins": [person.user_id]})
    gateway = await gateways(config, invite=[person.user_id])
    assert gateway.state is not None and gateway.reloader is not None and gateway.store
    space_id = gateway.state.topology.space_id
    assert space_id is not None
    await person.join(space_id)

    row = await spawn_agent(config, "parrot", ttl_s=10, idle_s=None, name="pop-up")
    gateway.reloader.request()  # what `salon agent spawn` asks for with SIGHUP
    server = synapse.server_name
    alias = f"#{config.naming.agent_room_alias.replace('{id}', row.agent_id)}:{server}"

    async def spawned() -> bool:
        return row.agent_id in (gateway.roster or [])

    await _eventually(spawned)
    room = await person.join(alias)
    children = {
        e["state_key"]: e["content"]
        for e in await person.state(space_id)
        if e["type"] == "m.space.child"
    }
    assert children.get(room, {}).get("via"), children
    marker = [e for e in await person.state(room) if e["type"] == SESSION_STATE]
    assert marker and marker[0]["content"]["template"] == "parrot"
    asked = await person.say(room, "hi there")
    reply = await person.wait_reply(room, asked)
    assert reply["content"]["body"] == "🦜 hi there"
    assert reply["sender"] == f"@{config.naming.agent_localpart.replace('{id}', 'pop-up')}:{server}"

    # The API's way (POST /api/v1/agents/spawn) waits until the agent runs.
    other = await gateway.spawn_session("echo", 600, None, "second")
    assert other == "second" and other in (gateway.roster or [])
    other_room = await person.join(
        f"#{config.naming.agent_room_alias.replace('{id}', other)}:{server}"
    )
    asked = await person.say(other_room, "you too")
    assert (await person.wait_reply(other_room, asked))["content"]["body"] == "you too"

    # After its TTL the janitor ends it: off the Space list, offline;
    # the room and its history stay.
    async def ended() -> bool:
        state = await person.state(space_id)
        child = next(
            (e for e in state if e["type"] == "m.space.child" and e["state_key"] == room), None
        )
        return child is not None and not child["content"]

    await _eventually(ended)

    # The router's hand-over follows the Space unlink (see live._remove).
    router = gateway.state.router.user_id

    async def taken_over() -> bool:
        return router in await person.api.get_joined_members(room)

    await _eventually(taken_over)
    stored = await gateway.store.session_agents.get(row.agent_id)
    assert stored is not None and stored.ended_reason == "ttl"
    state = await person.state(room)
    beats = [e for e in state if e["type"] == AGENT_STATE]
    assert beats and beats[0]["content"]["status"] == "offline"
    members = {
        e["state_key"]: e["content"]["membership"] for e in state if e["type"] == "m.room.member"
    }
    # The router takes the room over (commands answered, the API reads it); the
    # ended agent stays a member.
    assert members[gateway.state.router.user_id] == "join", members
    assert members[reply["sender"]] == "join", members
    bodies = [e["content"].get("body") for e in await person.history(room)]
    assert "🦜 hi there" in bodies
    assert row.agent_id not in (gateway.roster or [])
