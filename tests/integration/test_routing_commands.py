"""Routing and `!` commands on a real Synapse, as a person would use them.

The command scenarios run in both homeserver modes (the `deployment` fixture)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from salon.app.gateway import Gateway

from .conftest import Person, salon_config
from .modes import Deployment


async def _router_answer(person: Person, room_id: str, asked: str, sender: str) -> str:
    """The gateway's answer to a command, a notice from ``sender`` (the router, or in
    an agent's own room that agent)."""
    reply = await person.wait_reply(room_id, asked)
    assert reply["sender"] == sender, reply
    assert reply["content"]["com.salon.turn"]["agent"] == "router", reply
    assert reply["content"]["com.salon.turn"]["gateway"] is True, reply
    assert reply["content"]["msgtype"] == "m.notice", reply
    return str(reply["content"]["body"])


async def _shared_room(person: Person, config: Any, server: str, *agents: str) -> str:
    room = await person.api.create_room(
        invitees=[config.agent_user_id(a, server) for a in agents]  # type: ignore[misc]
    )
    deadline = time.monotonic() + 15
    wanted = {config.agent_user_id(a, server) for a in agents}
    while time.monotonic() < deadline:
        if wanted <= set(await person.api.get_joined_members(room)):
            return str(room)
        await asyncio.sleep(0.2)
    raise AssertionError("agents did not join")


def _replies_from(replies: list[dict[str, Any]], sender: str) -> list[dict[str, Any]]:
    return [r for r in replies if r["sender"] == sender]


async def test_mentions_pick_agents_in_a_shared_room_and_agents_do_not_chat_unasked(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    await gateways(config, invite=[person.user_id])
    server = synapse.server_name
    echo, parrot = (config.agent_user_id(a, server) for a in ("echo", "parrot"))
    room_id = await _shared_room(person, config, server, "echo", "parrot")

    asked = await person.say(room_id, "@Parrot what do you say?")
    reply = await person.wait_reply(room_id, asked)
    assert reply["sender"] == parrot
    asked = await person.say(
        room_id, "hey there", **{"m.mentions": {"user_ids": [echo]}}
    )  # a mention pill
    assert (await person.wait_reply(room_id, asked))["sender"] == echo
    await asyncio.sleep(2)
    history = await person.history(room_id)
    agent_msgs = [
        e for e in history if e["sender"] in (echo, parrot) and e["type"] == "m.room.message"
    ]
    # Exactly the two answers: neither agent answered the other's message.
    assert len(agent_msgs) == 2

    # Addressed to the router, but nothing decides: one short notice.
    router = f"@{config.router.localpart}:{server}"
    solo = await person.api.create_room(invitees=[router])  # type: ignore[misc]
    await asyncio.sleep(1)
    asked = await person.say(str(solo), f"{router} hello?")
    notice = await _router_answer(person, str(solo), asked, router)
    assert "!agent" in notice


async def test_declarative_route_and_nobody_notice(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(
        synapse, tmp_path, routes=[{"match": {"user": person.user_id}, "agent": "parrot"}]
    )
    await gateways(config, invite=[person.user_id])
    server = synapse.server_name
    room_id = await _shared_room(person, config, server, "echo", "parrot")
    asked = await person.say(room_id, "no mention here")
    reply = await person.wait_reply(room_id, asked)
    assert reply["sender"] == config.agent_user_id("parrot", server)

    router = f"@{config.router.localpart}:{server}"
    await person.api.invite_user(room_id, router)  # type: ignore[arg-type]
    await asyncio.sleep(1)  # the router accepts the invitation
    why = await person.say(
        room_id, "!why", **{"m.relates_to": {"m.in_reply_to": {"event_id": asked}}}
    )
    text = await _router_answer(person, room_id, why, router)
    assert "Parrot" in text and "routes[0]" in text


async def test_agent_then_new_then_reply_then_stale_gate_and_restart(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    person = await deployment.person(http)
    # A plain (non-encrypting) person: the `!new` chat is made unencrypted.
    config = deployment.config(encryption={"rooms": "none"})
    gateway = await gateways(config, invite=[person.user_id], secrets=deployment.secrets)
    server = deployment.hs.server_name
    router = f"@{config.router.localpart}:{server}"
    lobby = await person.join(f"#{config.naming.lobby_alias}:{server}")

    listing = await _router_answer(person, lobby, await person.say(lobby, "!agent"), router)
    assert "Echo" in listing and "Parrot" in listing
    text = await _router_answer(person, lobby, await person.say(lobby, "!new"), router)
    assert "!agent" in text  # no agent selected yet
    await _router_answer(person, lobby, await person.say(lobby, "!agent parrot"), router)
    text = await _router_answer(person, lobby, await person.say(lobby, "!new Project X"), router)
    chat_id = re.search(r"https://matrix\.to/#/(![^\s)]+)", text)
    assert chat_id, text
    chat = await person.join(chat_id.group(1))
    asked = await person.say(chat, "hello in private")
    reply = await person.wait_reply(chat, asked)
    assert reply["sender"] == config.agent_user_id("parrot", server)
    assert reply["content"]["body"] == "🦜 hello in private"

    # The chat is in the person's own Space; the router made it and left it to the
    # person and the agent, which answers commands there.
    parrot = config.agent_user_id("parrot", server)
    parents = [e for e in await person.state(chat) if e["type"] == "m.space.parent"]
    assert parents
    assert set(await person.api.get_joined_members(chat)) == {person.user_id, parrot}

    # Stale chat: the person now selects echo; the parrot chat says whose it is.
    await _router_answer(person, lobby, await person.say(lobby, "!agent 1"), router)
    asked = await person.say(chat, "anyone?")
    text = await _router_answer(person, chat, asked, parrot)
    assert "Parrot" in text and "!new" in text
    # That notice is the only answer: the agent took no turn.
    assert gateway.store is not None
    decision = await gateway.store.decisions.get(asked)
    assert decision is not None and decision.reason == "stale_chat" and not decision.agents
    answers = _replies_from(await person.replies_to(chat, asked), parrot)
    assert [r["content"]["com.salon.turn"]["agent"] for r in answers] == ["router"]

    # After a restart: selection and binding are still there.
    await gateway.stop()
    await gateways(config, invite=[person.user_id], secrets=deployment.secrets)
    listing = await _router_answer(person, lobby, await person.say(lobby, "!agent"), router)
    assert re.search(r"→\s*1\.?\s*Echo|→.*Echo", listing), listing
    await _router_answer(person, lobby, await person.say(lobby, "!agent parrot"), router)
    asked = await person.say(chat, "back again")
    reply = await person.wait_reply(chat, asked)
    assert reply["sender"] == config.agent_user_id("parrot", server)
    chats = await _router_answer(person, lobby, await person.say(lobby, "!chats"), router)
    assert "Project X" in chats

    renamed = await _router_answer(
        person, chat, await person.say(chat, "!rename Big plans"), parrot
    )
    assert "Big plans" in renamed
    name = [e for e in await person.state(chat) if e["type"] == "m.room.name"]
    assert name[0]["content"]["name"] == "Big plans" and name[0]["sender"] == parrot
    await _router_answer(person, chat, await person.say(chat, "!archive"), parrot)
    chats = await _router_answer(person, lobby, await person.say(lobby, "!chats"), router)
    assert "Big plans" not in chats and "Project X" not in chats

    # Per-person language.
    await _router_answer(person, lobby, await person.say(lobby, "!lang ru"), router)
    hint = await _router_answer(person, lobby, await person.say(lobby, "!nope"), router)
    assert "!help" in hint and re.search("[а-я]", hint)


async def test_save_load_reset_context_and_unknown_command(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    person = await deployment.person(http)
    config = deployment.base
    await gateways(config, invite=[person.user_id], secrets=deployment.secrets)
    server = deployment.hs.server_name
    # In an agent's own room the agent answers commands: the router is not a member.
    router = config.agent_user_id("echo", server)
    room = await person.join(f"#{config.agent_room_alias_localpart('echo')}:{server}")

    await person.wait_reply(room, await person.say(room, "remember this"))
    saved = await _router_answer(person, room, await person.say(room, "!save first"), router)
    assert "first" in saved
    await _router_answer(person, room, await person.say(room, "!reset"), router)
    context = await _router_answer(person, room, await person.say(room, "!context"), router)
    assert re.search(r"\b0\b", context), context
    listing = await _router_answer(person, room, await person.say(room, "!load"), router)
    assert "first" in listing
    loaded = await _router_answer(person, room, await person.say(room, "1"), router)
    assert "first" in loaded
    context = await _router_answer(person, room, await person.say(room, "!context"), router)
    assert re.search(r"\b2\b", context), context
    hint = await _router_answer(person, room, await person.say(room, "!frobnicate"), router)
    assert "!help" in hint
