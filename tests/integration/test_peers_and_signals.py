"""Agents of two gateways in one room stay bounded; slow replies show typing and busy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mautrix.api import Method
from mautrix.api import Path as MxPath

from salon.app.gateway import Gateway
from salon.config.models import PeerConfig, SalonConfig
from salon.coordination.heartbeat import AGENT_STATE

from .conftest import Person, salon_config


def _half(base: SalonConfig, tmp_path: Path, mine: str, peer: str, server: str) -> SalonConfig:
    """One gateway of a two-gateway deployment: it hosts ``mine`` and knows ``peer``."""
    return base.model_copy(
        update={
            "agents": {mine: base.agents[mine]},
            "peers": {peer: PeerConfig(user_id=base.agent_user_id(peer, server))},
            "store": base.store.model_copy(update={"url": f"sqlite:///{tmp_path}/{mine}.db"}),
            "data_dir": str(tmp_path / mine),
        }
    )


async def _reasons(gateway: Gateway) -> list[str]:
    assert gateway.store is not None
    rows = await gateway.store.db.fetchall("SELECT reason FROM decisions")
    return [r["reason"] for r in rows]


async def test_agents_of_peer_gateways_do_not_talk_forever(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    server = synapse.server_name
    agents = {
        "alpha": {"backend": {"type": "echo"}},
        "beta": {"backend": {"type": "echo"}},
    }
    base = salon_config(synapse, tmp_path, agents=agents, routing={"hop_limit": 3})
    first = await gateways(_half(base, tmp_path, "alpha", "beta", server))
    second = await gateways(_half(base, tmp_path, "beta", "alpha", server))
    alpha, beta = base.agent_user_id("alpha", server), base.agent_user_id("beta", server)
    data = await person.api.api.request(
        Method.POST, MxPath.v3.createRoom, {"preset": "private_chat", "invite": [alpha, beta]}
    )
    room = str(data["room_id"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        members = await person.api.api.request(Method.GET, MxPath.v3.rooms[room].joined_members)
        if {alpha, beta} <= set(members.get("joined") or {}):
            break
        await asyncio.sleep(0.2)
    # Each echo repeats both user ids, so every reply mentions the other agent.
    await person.say(room, f"hello {alpha} {beta}")
    # Both gateways end the exchange at the hop limit: a stored decision says so.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "hop_limit" in await _reasons(first) and "hop_limit" in await _reasons(second):
            break
        await asyncio.sleep(0.2)
    assert "hop_limit" in await _reasons(first)
    assert "hop_limit" in await _reasons(second)
    agent_messages = [
        e
        for e in await person.history(room, limit=200)
        if e["type"] == "m.room.message"
        and e["sender"] in (alpha, beta)
        and (e["content"].get("m.relates_to") or {}).get("rel_type") != "m.replace"
    ]
    hops = sorted(e["content"]["com.salon.turn"]["hop"] for e in agent_messages)
    # hop 1: both answer the person; then each answers the other until hop 3.
    assert hops and max(hops) <= 3, hops
    assert len(agent_messages) <= 6, hops


async def _typing_and_state(
    person: Person, room: str, since: str, seconds: float
) -> tuple[set[str], list[dict[str, Any]]]:
    """Who was seen typing in ``room``, and its agent-state events, over ``seconds``."""
    typing: set[str] = set()
    states: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = await person.api.api.request(
            Method.GET, MxPath.v3.sync, query_params={"since": since, "timeout": "500"}
        )
        since = data["next_batch"]
        joined = (data.get("rooms") or {}).get("join") or {}
        for event in (joined.get(room) or {}).get("ephemeral", {}).get("events", []):
            if event.get("type") == "m.typing":
                typing.update(event["content"].get("user_ids") or [])
        for event in (joined.get(room) or {}).get("timeline", {}).get("events", []):
            if event.get("type") == AGENT_STATE:
                states.append(event)
    return typing, states


async def test_a_slow_first_chunk_shows_typing_and_busy(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    agents = {"slow": {"backend": {"type": "echo", "delay_s": 1.0}}}
    config = salon_config(synapse, tmp_path, agents=agents)
    await gateways(config, invite=[person.user_id])
    server = synapse.server_name
    room = await person.join(f"#{config.agent_room_alias_localpart('slow')}:{server}")
    slow = config.agent_user_id("slow", server)
    first = await person.api.api.request(Method.GET, MxPath.v3.sync, query_params={"timeout": "0"})
    asked = await person.say(room, "take your time")
    typing, states = await _typing_and_state(person, room, first["next_batch"], 2.5)
    assert slow in typing
    assert any(e["content"].get("status") == "busy" for e in states), states
    reply = await person.wait_reply(room, asked)
    assert reply["content"]["body"] == "take your time"
