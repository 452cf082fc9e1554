"""Space, lobby and agent rooms on a real Synapse: created, linked, reused, race-safe."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.matrix.registration import Credentials

from ..gateway.helpers import eventually, sample
from .conftest import Person, salon_config


def _children(state: list[dict[str, Any]]) -> set[str]:
    return {
        e["state_key"]
        for e in state
        if e["type"] == "m.space.child" and (e.get("content") or {}).get("via")
    }


async def _new_chat(person: Person, config: SalonConfig, server: str, agent: str) -> str:
    """A `!new` chat with ``agent``, made from the lobby; the person joins it."""
    lobby = await person.join(f"#{config.naming.lobby_alias}:{server}")
    await person.wait_reply(lobby, await person.say(lobby, f"!agent {agent}"))
    made = await person.wait_reply(lobby, await person.say(lobby, "!new"))
    found = re.search(r"https://matrix\.to/#/(![^\s)]+)", made["content"]["body"])
    assert found, made
    return await person.join(found.group(1))


async def test_space_and_agent_rooms_exist_and_are_linked(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    gateway = await gateways(config, invite=[person.user_id])
    state = gateway.state
    assert state is not None and state.topology.space_id is not None

    space_id = await person.join(f"#{config.space.alias}:{synapse.server_name}")
    assert space_id == state.topology.space_id
    space_state = await person.state(space_id)
    create = next(e for e in space_state if e["type"] == "m.room.create")
    assert create["content"].get("type") == "m.space"
    children = _children(space_state)
    for agent_id in ("echo", "parrot"):
        alias = f"#{config.agent_room_alias_localpart(agent_id)}:{synapse.server_name}"
        room_id = await person.join(alias)  # the operator was invited
        assert room_id in children
        parent = [
            e
            for e in await person.state(room_id)
            if e["type"] == "m.space.parent" and e["state_key"] == space_id
        ]
        assert parent and parent[0]["content"]["via"] == [synapse.server_name]
        members = await person.api.get_joined_members(room_id)
        agent_user = config.agent_user_id(agent_id, synapse.server_name)
        assert agent_user in members
        # The agent made and owns its room; the router stays out of it (each member
        # costs the homeserver work on every reply sent there).
        assert state.router.user_id not in members
        create = next(e for e in await person.state(room_id) if e["type"] == "m.room.create")
        assert create["sender"] == agent_user
    assert state.topology.lobby_id in children


async def test_a_router_left_in_an_agent_room_leaves_at_the_next_start(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    """Deployments from before agents owned their rooms had the router in each one."""
    config = salon_config(synapse, tmp_path)
    first = await gateways(config, invite=[person.user_id])
    assert first.state is not None
    echo_room = first.state.topology.agent_rooms["echo"]  # type: ignore[index]
    router, echo = first.state.router, first.state.agent_apis["echo"]  # type: ignore[index]
    await echo.invite(echo_room, router.user_id)
    await router.join(echo_room)
    assert router.user_id in await echo.joined_members(echo_room)
    await first.stop()

    second = await gateways(config, invite=[person.user_id])
    assert second.state is not None and second.state.topology.agent_rooms["echo"] == echo_room  # type: ignore[index]
    await person.join(echo_room)
    assert second.state.router.user_id not in await person.api.get_joined_members(echo_room)
    # Space, listing and answers work without it.
    space_id = await person.join(f"#{config.space.alias}:{synapse.server_name}")
    assert echo_room in _children(await person.state(space_id))
    asked = await person.say(echo_room, "still yours?")
    assert (await person.wait_reply(echo_room, asked))["content"]["body"] == "still yours?"


async def test_restart_on_same_store_creates_no_duplicates(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    first = await gateways(config, invite=[person.user_id])
    assert first.state is not None
    before = (first.state.topology.space_id, dict(first.state.topology.agent_rooms))
    await first.stop()

    second = await gateways(config, invite=[person.user_id])
    assert second.state is not None
    after = (second.state.topology.space_id, dict(second.state.topology.agent_rooms))
    assert after == before
    space_id = await person.join(f"#{config.space.alias}:{synapse.server_name}")
    assert len(_children(await person.state(space_id))) == 3  # lobby + two agents


async def test_two_gateways_starting_at_once_end_with_one_room_per_alias(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config_a = salon_config(synapse, tmp_path / "a")
    # Same deployment names, separate stores: two processes racing on a fresh namespace.
    config_b = config_a.model_copy(
        update={"store": config_a.store.model_copy(update={"url": f"sqlite:///{tmp_path}/b.db"})}
    )
    a, b = await asyncio.gather(
        gateways(config_a, invite=[person.user_id]), gateways(config_b, invite=[person.user_id])
    )
    assert a.state is not None and b.state is not None
    assert a.state.topology.space_id == b.state.topology.space_id
    assert a.state.topology.lobby_id == b.state.topology.lobby_id
    assert a.state.topology.agent_rooms == b.state.topology.agent_rooms
    space_id = await person.join(f"#{config_a.space.alias}:{synapse.server_name}")
    assert len(_children(await person.state(space_id))) == 3


async def test_space_unavailable_degrades_gracefully(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    new_user: Callable[..., Awaitable[Credentials]],
    http: Any,
    person: Person,
) -> None:
    config = salon_config(synapse, tmp_path)
    # Someone else squats the Space alias with a private room the router cannot join.
    squatter = Person(await new_user(), synapse.base_url, http)
    await squatter.api.create_room(alias_localpart=config.space.alias)

    gateway = await gateways(config, invite=[person.user_id])
    assert gateway.state is not None
    assert gateway.state.topology.space_id is None
    assert gateway.state.topology.space_error
    # Agents still answer in their rooms.
    room_id = await person.join(
        f"#{config.agent_room_alias_localpart('echo')}:{synapse.server_name}"
    )
    asked = await person.say(room_id, "still here?")
    reply = await person.wait_reply(room_id, asked)
    assert reply["content"]["body"] == "still here?"


async def test_agents_visit_each_others_rooms_only_when_asked(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    """Every member of a room costs the homeserver work per event there, and inviting
    every agent into every room costs N² requests at start: agents are invited into
    each other's rooms only when asked in (by the room's owner), and join then."""
    config = salon_config(synapse, tmp_path)
    gateway = await gateways(config, invite=[person.user_id])
    server = synapse.server_name
    echo, parrot = (config.agent_user_id(a, server) for a in ("echo", "parrot"))
    room = await person.join(f"#{config.agent_room_alias_localpart('echo')}:{server}")
    members = {
        e["state_key"]: e["content"]["membership"]
        for e in await person.state(room)
        if e["type"] == "m.room.member"
    }
    assert parrot not in members and members[echo] == "join", members
    assert set(await person.api.get_joined_members(room)) == {echo, person.user_id}

    # A mention brings the visitor in: it joins and answers.
    asked = await person.say(room, "@Parrot what do you say?")
    reply = await person.wait_reply(room, asked)
    assert reply["sender"] == parrot
    assert parrot in await person.api.get_joined_members(room)

    # At the next start the visitor leaves again; a mention brings it back.
    await gateway.stop()
    await gateways(config, invite=[person.user_id])
    assert set(await person.api.get_joined_members(room)) == {echo, person.user_id}
    asked = await person.say(room, "@Parrot again?")
    assert (await person.wait_reply(room, asked))["sender"] == parrot


async def test_a_router_left_in_a_chat_leaves_at_the_next_start(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    """`!new` chats from older versions had the router in them, as a third member."""
    # A plain (non-encrypting) person: the chat is made unencrypted.
    config = salon_config(synapse, tmp_path, encryption={"rooms": "none"})
    first = await gateways(config, invite=[person.user_id])
    assert first.state is not None
    server = synapse.server_name
    chat = await _new_chat(person, config, server, "parrot")
    router, parrot = first.state.router, first.state.agent_apis["parrot"]  # type: ignore[index]
    assert router.user_id not in await person.api.get_joined_members(chat)
    await parrot.invite(chat, router.user_id)  # as an older version left it
    await router.join(chat)
    await first.stop()

    await gateways(config, invite=[person.user_id])
    members = set(await person.api.get_joined_members(chat))
    assert members == {person.user_id, parrot.user_id}
    asked = await person.say(chat, "still there?")
    assert (await person.wait_reply(chat, asked))["content"]["body"] == "🦜 still there?"


async def test_rooms_of_an_agent_removed_while_down_are_taken_over_at_start(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    """Its own room and its `!new` chat hold only it and people; with the agent gone and
    the router not brought in, commands and messages there went unanswered."""
    # A plain (non-encrypting) person: the chat is made unencrypted.
    config = salon_config(synapse, tmp_path, encryption={"rooms": "none"})
    first = await gateways(config, invite=[person.user_id])
    assert first.state is not None
    server = synapse.server_name
    chat = await _new_chat(person, config, server, "parrot")
    parrot_room = await person.join(f"#{config.agent_room_alias_localpart('parrot')}:{server}")
    router = first.state.router.user_id
    assert router not in await person.api.get_joined_members(chat)
    assert router not in await person.api.get_joined_members(parrot_room)
    await first.stop()

    agents = {k: v for k, v in config.agents.items() if k != "parrot"}
    await gateways(config.model_copy(update={"agents": agents}), invite=[person.user_id])

    for room in (chat, parrot_room):
        assert router in await person.api.get_joined_members(room)
        helped = await person.wait_reply(room, await person.say(room, "!help"))
        assert helped["sender"] == router and "!agent" in helped["content"]["body"]
    asked = await person.say(chat, "anyone here?")
    answered = await person.wait_reply(chat, asked)
    assert answered["sender"] != router, answered


async def test_a_visitor_leaves_once_idle_while_running(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    """A visitor that stayed would cost every later reply in that room until a restart."""
    config = salon_config(synapse, tmp_path, space={"visit_idle_s": 1})
    await gateways(config, invite=[person.user_id])
    server = synapse.server_name
    echo, parrot = (config.agent_user_id(a, server) for a in ("echo", "parrot"))
    room = await person.join(f"#{config.agent_room_alias_localpart('echo')}:{server}")
    before = sample("salon_visits_ended_total", reason="idle")
    asked = await person.say(room, "@Parrot what do you say?")
    assert (await person.wait_reply(room, asked))["sender"] == parrot

    await eventually(
        lambda: sample("salon_visits_ended_total", reason="idle") > before,
        timeout=20,
        what="the idle visit ended",
    )
    members = {
        e["state_key"]: e["content"]["membership"]
        for e in await person.state(room)
        if e["type"] == "m.room.member"
    }
    assert members[parrot] == "invite" and members[echo] == "join", members
    asked = await person.say(room, "@Parrot back again?")
    assert (await person.wait_reply(room, asked))["sender"] == parrot
