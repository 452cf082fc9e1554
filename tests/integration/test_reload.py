"""Hot reload on a real Synapse: an agent added and one removed while the gateway runs,
a message to another agent during the reload still answered, a broken edit refused."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from salon.app.gateway import Gateway, ReloadSource
from salon.config import load_config
from salon.coordination.heartbeat import AGENT_STATE
from salon.gateway.reload import RELOAD_STATUS_KEY

from .conftest import Person, salon_config


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


async def _reload_status(gateway: Gateway, after_ms: int, timeout: float = 60) -> dict[str, Any]:
    """The next reload result stored after ``after_ms`` (waits for it)."""
    assert gateway.store is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await gateway.store.kv.get(RELOAD_STATUS_KEY)
        if raw:
            status = json.loads(raw)
            if status["at_ms"] >= after_ms:
                return dict(status)
        await asyncio.sleep(0.2)
    raise AssertionError("no reload within the timeout")


async def _space_children(person: Person, space_id: str) -> dict[str, dict[str, Any]]:
    state = await person.state(space_id)
    return {e["state_key"]: e["content"] for e in state if e["type"] == "m.space.child"}


async def test_agents_come_and_go_while_running_and_a_broken_edit_is_refused(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    base = salon_config(synapse, tmp_path, access={"admins": [person.user_id]})
    data = base.model_dump(mode="json", exclude_none=True)
    data["agents"] = {
        "echo": data["agents"]["echo"],
        "parrot": data["agents"]["parrot"],
    }
    path = tmp_path / "salon.yaml"
    _write(path, data)
    gateway = await gateways(
        load_config(path),
        invite=[person.user_id],
        reload=ReloadSource(lambda: load_config(path), watch=path),
    )
    assert gateway.state is not None and gateway.store is not None
    server = synapse.server_name
    space_id = gateway.state.topology.space_id
    assert space_id is not None
    await person.join(space_id)
    echo_room = await person.join(f"#{base.agent_room_alias_localpart('echo')}:{server}")
    parrot_room = await person.join(f"#{base.agent_room_alias_localpart('parrot')}:{server}")
    asked = await person.say(echo_room, "before")
    assert (await person.wait_reply(echo_room, asked))["content"]["body"] == "before"
    asked = await person.say(parrot_room, "remember me")
    assert (await person.wait_reply(parrot_room, asked))["content"]["body"] == "🦜 remember me"

    # Add `newbie`, remove `parrot`, and talk to echo while the reload happens.
    started = int(time.time() * 1000)
    data["agents"] = {
        "echo": data["agents"]["echo"],
        "newbie": {"label": "Newbie", "backend": {"type": "echo", "prefix": "new: "}},
    }
    _write(path, data)
    during = await person.say(echo_room, "during the reload")
    status = await _reload_status(gateway, started)
    assert status["ok"], status
    assert (status["added"], status["removed"]) == (["newbie"], ["parrot"])
    assert (await person.wait_reply(echo_room, during))["content"]["body"] == "during the reload"

    # The new agent has its room in the Space and answers there.
    newbie_alias = f"#{base.naming.agent_room_alias.replace('{id}', 'newbie')}:{server}"
    newbie_room = await person.join(newbie_alias)
    children = await _space_children(person, space_id)
    assert children.get(newbie_room, {}).get("via"), children
    asked = await person.say(newbie_room, "hello")
    reply = await person.wait_reply(newbie_room, asked)
    assert reply["content"]["body"] == "new: hello"
    assert reply["sender"] == f"@{base.naming.agent_localpart.replace('{id}', 'newbie')}:{server}"
    # Echo is not invited into it up front: the owner invites it when it visits.
    echo_user = base.agent_user_id("echo", server)
    members = {
        e["state_key"]: e["content"]["membership"]
        for e in await person.state(newbie_room)
        if e["type"] == "m.room.member"
    }
    assert echo_user not in members, members
    asked = await person.say(newbie_room, "@Echo are you there?")
    assert (await person.wait_reply(newbie_room, asked))["sender"] == echo_user

    # The removed one is offline and off the Space's list; its room and history stay.
    assert not (await _space_children(person, space_id)).get(parrot_room)
    parrot_state = [e for e in await person.state(parrot_room) if e["type"] == AGENT_STATE]
    assert parrot_state and parrot_state[0]["content"]["status"] == "offline"
    bodies = [e["content"].get("body") for e in await person.history(parrot_room)]
    assert "🦜 remember me" in bodies
    # The router took its room over: commands there are still answered.
    router = f"@{base.router.localpart}:{server}"
    assert router in await person.api.get_joined_members(parrot_room)
    helped = await person.wait_reply(parrot_room, await person.say(parrot_room, "!help"))
    assert helped["sender"] == router and "!agent" in helped["content"]["body"]
    assert gateway.store is not None
    turns = await gateway.store.db.fetchval(
        "SELECT COUNT(*) FROM turns WHERE agent_id = 'parrot' AND state IN ('admitted', 'running')"
    )
    assert turns == 0

    # A broken edit is refused with the loader's error; the running agents keep answering.
    started = int(time.time() * 1000)
    data["agents"]["echo"]["backend"]["type"] = "no-such-backend"
    _write(path, data)
    status = await _reload_status(gateway, started)
    assert not status["ok"]
    assert "salon.yaml" in status["error"] and "agents.echo.backend" in status["error"]
    asked = await person.say(echo_room, "after")
    assert (await person.wait_reply(echo_room, asked))["content"]["body"] == "after"
