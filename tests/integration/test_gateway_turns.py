"""Messages in agent rooms get answered by the agent's own user; failures stay visible."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from salon.app.gateway import Gateway
from salon.coordination.heartbeat import AGENT_STATE
from salon.metrics import EVENTS_DROPPED
from salon.store.records import InboxState

from .conftest import Person, salon_config


async def _agent_room(person: Person, config: Any, agent: str, server: str) -> str:
    return await person.join(f"#{config.agent_room_alias_localpart(agent)}:{server}")


async def test_agent_answers_in_its_room_as_its_own_user(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    await gateways(config, invite=[person.user_id])
    room_id = await _agent_room(person, config, "parrot", synapse.server_name)
    asked = await person.say(room_id, "hello")
    reply = await person.wait_reply(room_id, asked)
    assert reply["sender"] == config.agent_user_id("parrot", synapse.server_name)
    assert reply["content"]["body"] == "🦜 hello"
    # Only the room's own agent answers, once.
    await asyncio.sleep(0.5)
    assert len(await person.replies_to(room_id, asked)) == 1


async def test_backend_error_is_a_visible_notice_and_the_agent_keeps_going(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    await gateways(config, invite=[person.user_id])
    room_id = await _agent_room(person, config, "echo", synapse.server_name)
    bad = await person.say(room_id, "please FAIL now")
    notice = await person.wait_reply(room_id, bad)
    assert notice["content"]["msgtype"] == "m.notice"
    assert "could not answer" in notice["content"]["body"]
    good = await person.say(room_id, "and now?")
    reply = await person.wait_reply(room_id, good)
    assert reply["content"]["body"] == "and now?"


async def test_unauthorised_sender_is_dropped_with_the_reason_stored(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path, access={"allowed_users": ["@nobody-else:*"]})
    gateway = await gateways(config, invite=[person.user_id])
    store = gateway.store
    assert store is not None
    room_id = await _agent_room(person, config, "echo", synapse.server_name)
    before = EVENTS_DROPPED.labels(reason="unauthorised")._value.get()
    asked = await person.say(room_id, "hello?")
    deadline = asyncio.get_running_loop().time() + 20
    while (row := await store.inbox.get(asked)) is None or row.state is InboxState.NEW:
        assert asyncio.get_running_loop().time() < deadline, "the message was never handled"
        await asyncio.sleep(0.1)
    assert (row.state, row.reason) == (InboxState.DROPPED, "unauthorised")
    assert EVENTS_DROPPED.labels(reason="unauthorised")._value.get() == before + 1
    assert await store.turns.get(asked, "echo") is None  # no turn was started


async def test_failed_sync_loop_restarts_while_other_agents_answer(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path, sync={"timeout_ms": 1000})
    gateway = await gateways(config, invite=[person.user_id])
    assert gateway.state is not None
    echo_api = gateway.state.agent_apis["echo"]
    # Kill the echo agent's session on the homeserver: its /sync now fails (M_UNKNOWN_TOKEN).
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"{synapse.base_url}/_matrix/client/v3/logout",
            json={},
            headers={"Authorization": f"Bearer {echo_api.access_token}"},
        )
        assert resp.status == 200
    parrot_room = await _agent_room(person, config, "parrot", synapse.server_name)
    asked = await person.say(parrot_room, "are you there?")
    assert (await person.wait_reply(parrot_room, asked))["content"]["body"] == "🦜 are you there?"

    echo_user = config.agent_user_id("echo", synapse.server_name)
    status = {s.identity: s for s in gateway.loop_status()}
    deadline = asyncio.get_running_loop().time() + 20
    while status[echo_user].restarts == 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        status = {s.identity: s for s in gateway.loop_status()}
    assert status[echo_user].restarts >= 1
    assert all(s.restarts == 0 for u, s in status.items() if u != echo_user)
    # The restarted loop logged in again and the echo agent answers once more.
    echo_room = await _agent_room(person, config, "echo", synapse.server_name)
    asked = await person.say(echo_room, "back?")
    assert (await person.wait_reply(echo_room, asked, timeout=30))["content"]["body"] == "back?"


async def test_heartbeat_online_while_running_offline_after_clean_stop(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    gateway = await gateways(config, invite=[person.user_id])
    room_id = await _agent_room(person, config, "echo", synapse.server_name)
    echo_user = config.agent_user_id("echo", synapse.server_name)

    async def beat() -> dict[str, Any]:
        # The first beat is sent by the heartbeat loop just after start: wait for it.
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            state = await person.state(room_id)
            beats = [
                e["content"]
                for e in state
                if e["type"] == AGENT_STATE and e["state_key"] == echo_user
            ]
            if beats or asyncio.get_running_loop().time() > deadline:
                assert beats, "no heartbeat state event"
                return beats[0]
            await asyncio.sleep(0.1)

    online = await beat()
    assert online["status"] == "online" and online["agent"] == "echo"
    assert online["ttl_s"] == config.heartbeat.ttl_s
    await gateway.stop()
    assert (await beat())["status"] == "offline"


async def test_history_from_before_the_deployment_existed_is_not_answered(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path / "old")
    old = await gateways(config, invite=[person.user_id])
    room_id = await _agent_room(person, config, "echo", synapse.server_name)
    await old.stop()
    before = await person.say(room_id, "said before the new deployment")
    # A fresh store: a new deployment of the same agents, which never saw that message.
    fresh = config.model_copy(
        update={"store": config.store.model_copy(update={"url": f"sqlite:///{tmp_path}/new.db"})}
    )
    await asyncio.sleep(0.05)
    await gateways(fresh)
    after = await person.say(room_id, "said after")
    assert (await person.wait_reply(room_id, after))["content"]["body"] == "said after"
    assert await person.replies_to(room_id, before) == []


async def test_salon_users_do_not_collect_notifications(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]]
) -> None:
    # The homeserver evaluates every member's push rules for each message; our users'
    # master rule is on, so that work ends at its first step (see bench/roundtrip.py).
    from mautrix.api import Method
    from mautrix.api import Path as MxPath

    gateway = await gateways(salon_config(synapse, tmp_path))
    assert gateway.state is not None
    path = MxPath.v3.pushrules["global"]["override"][".m.rule.master"].enabled
    for api in [gateway.state.router, *gateway.state.agent_apis.values()]:
        assert (await api._call("check", Method.GET, path))["enabled"] is True
