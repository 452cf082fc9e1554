"""Delegation between agents over a real Synapse: results, notices, refusals, teams.

The core scenarios run in both homeserver modes (the `deployment` fixture)."""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from hypothesis import strategies as st
from mautrix.api import Method
from mautrix.api import Path as MxPath

from salon.app.gateway import Gateway
from salon.config.models import PeerConfig
from salon.coordination.protocol import REQUEST, STATUS
from salon.matrix.api import MatrixAPI
from salon.matrix.membership import join_or_be_invited

from .conftest import Person, salon_config
from .modes import Deployment
from .test_agent_runtime import _final_text

PLUGINS = "tests.integration.plugins"


def _agents() -> dict[str, Any]:
    return {
        "alpha": {
            "backend": {
                "type": "python",
                "entry": f"{PLUGINS}:delegating",
                "options": {"to": "beta"},
            }
        },
        "beta": {"backend": {"type": "echo", "prefix": "beta says "}},
    }


async def _send_raw(api: Any, room_id: str, etype: str, content: dict[str, Any]) -> str:
    if isinstance(api, MatrixAPI):
        return await api.send_event(room_id, etype, content, txn_id=uuid.uuid4().hex)  # type: ignore[arg-type]
    path = MxPath.v3.rooms[room_id].send[etype][uuid.uuid4().hex]
    return str((await api.api.request(Method.PUT, path, content))["event_id"])


async def _events(person: Person, room_id: str, etype: str) -> list[dict[str, Any]]:
    return [e for e in await person.history(room_id, limit=200) if e["type"] == etype]


async def _wait_status(person: Person, room_id: str, delegation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for event in await _events(person, room_id, STATUS):
            if (
                event["content"].get("id") == delegation_id
                and event["content"]["state"] != "accepted"
            ):
                return dict(event["content"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"no status for {delegation_id}")


async def _inbox_reason(gateway: Gateway, event_id: str, timeout: float = 15) -> str | None:
    """The reason stored when the gateway handled ``event_id`` (waits until it did)."""
    assert gateway.store is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await gateway.store.db.fetchone(
            "SELECT state, reason FROM inbox WHERE event_id = $1", event_id
        )
        if row is not None and row["state"] != "new":
            return str(row["reason"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"{event_id} was not handled within {timeout} s")


def _request(delegation_id: str, **over: Any) -> dict[str, Any]:
    body = {
        "v": 1,
        "id": delegation_id,
        "from": "alpha",
        "to": "beta",
        "task": "say hi",
        "root": delegation_id,
        "chain": ["alpha", "beta"],
        "hop": 1,
        "deadline_ts": int(time.time() * 1000) + 60_000,
    }
    body.update(over)
    return body


async def test_delegation_result_reaches_the_final_answer_with_notices(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    person = await deployment.person(http)
    config = deployment.config(agents=_agents())
    gateway = await gateways(config, invite=[person.user_id], secrets=deployment.secrets)
    assert gateway.state is not None
    server = deployment.hs.server_name
    room = await person.join(f"#{config.agent_room_alias_localpart('alpha')}:{server}")
    asked = await person.say(room, "hello")
    assert await _final_text(person, room, asked) == "alpha got: beta says task: hello"
    notices = [
        e["content"]["body"]
        for e in await _events(person, room, "m.room.message")
        if e["content"].get("msgtype") == "m.notice"
    ]
    assert any("alpha → beta" in n for n in notices)
    assert any("beta finished" in n for n in notices)
    # The request travelled as a typed event into beta's room, sent by alpha's own user.
    beta_room = await person.join(f"#{config.agent_room_alias_localpart('beta')}:{server}")
    requests = await _events(person, beta_room, REQUEST)
    assert requests and requests[-1]["sender"] == config.agent_user_id("alpha", server)


async def test_refusals_hop_limit_cycle_forgery_and_garbage(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    person = await deployment.person(http)
    config = deployment.config(agents=_agents())
    gateway = await gateways(config, invite=[person.user_id], secrets=deployment.secrets)
    assert gateway.state is not None
    alpha_api = gateway.state.agent_apis["alpha"]
    server = deployment.hs.server_name
    beta_room = await person.join(f"#{config.agent_room_alias_localpart('beta')}:{server}")
    # Visitors are invited when they visit; the test posts as alpha by hand, so beta
    # lets it in as a delegation would.
    beta_api = gateway.state.agent_apis["beta"]
    await join_or_be_invited(alpha_api, beta_room, beta_api)  # type: ignore[arg-type]

    hop = _request(
        "dlg_hop",
        hop=4,
        root="dlg_root1",
        parent="dlg_p1",
        chain=["alpha", "beta", "alpha", "beta"][:2],
    )
    hop["chain"] = ["gamma", "delta", "epsilon", "alpha", "beta"]
    await _send_raw(alpha_api, beta_room, REQUEST, hop)
    assert "hop limit" in (await _wait_status(person, beta_room, "dlg_hop"))["error"]

    cycle = _request(
        "dlg_cycle", root="dlg_root2", parent="dlg_p2", hop=2, chain=["beta", "alpha", "beta"]
    )
    await _send_raw(alpha_api, beta_room, REQUEST, cycle)
    assert "cycle" in (await _wait_status(person, beta_room, "dlg_cycle"))["error"]

    assert gateway.store is not None
    # A request from someone who is not the agent it names: dropped, never answered
    # (an answer carrying its id could end a real delegation of that id).
    forged = await _send_raw(person.api, beta_room, REQUEST, _request("dlg_forged"))
    assert await _inbox_reason(gateway, forged) == "delegation forged"

    # A real request, then a copy of it re-posted by a member of the room: the copy is
    # ignored; the real delegation is answered once, never "rejected".
    real = _request("dlg_real")
    await _send_raw(alpha_api, beta_room, REQUEST, real)
    assert (await _wait_status(person, beta_room, "dlg_real"))["state"] == "completed"
    copy = await _send_raw(person.api, beta_room, REQUEST, real)
    assert await _inbox_reason(gateway, copy) == "delegation duplicate"

    payloads = st.dictionaries(
        st.sampled_from(["v", "id", "from", "to", "task", "hop", "chain", "deadline_ts", "x"]),
        st.none()
        | st.integers(-(2**53) + 1, 2**53 - 1)
        | st.text(max_size=20)
        | st.lists(st.text(max_size=5)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        garbage = [payloads.example() for _ in range(15)]
    for content in garbage:
        await _send_raw(alpha_api, beta_room, REQUEST, content)
        await _send_raw(alpha_api, beta_room, STATUS, content)
    # Nothing crashed: beta still answers people.
    asked = await person.say(beta_room, "still fine?")
    assert (await person.wait_reply(beta_room, asked))["content"]["body"] == "beta says still fine?"
    beta = config.agent_user_id("beta", server)
    statuses = [e for e in await _events(person, beta_room, STATUS) if e["sender"] == beta]
    # Only the well-formed requests of a known agent were answered; garbage got no status.
    assert {e["content"]["id"] for e in statuses} == {"dlg_hop", "dlg_cycle", "dlg_real"}
    real_states = [e["content"]["state"] for e in statuses if e["content"]["id"] == "dlg_real"]
    assert real_states == ["accepted", "completed"]


async def test_offline_target_fails_at_once_without_a_request(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    full = salon_config(synapse, tmp_path / "full", agents=_agents())
    first = await gateways(full, invite=[person.user_id])
    await first.stop()  # beta says offline on the way out
    alone = full.model_copy(
        update={
            "agents": {"alpha": full.agents["alpha"]},
            "peers": {"beta": PeerConfig(user_id=full.agent_user_id("beta", synapse.server_name))},
            "store": full.store.model_copy(update={"url": f"sqlite:///{tmp_path}/alone.db"}),
        }
    )
    await gateways(alone, invite=[person.user_id])
    server = synapse.server_name
    room = await person.join(f"#{full.agent_room_alias_localpart('alpha')}:{server}")
    asked = await person.say(room, "anyone?")
    assert await _final_text(person, room, asked) == "alpha got: [OFFLINE] beta"
    beta_room = await person.join(f"#{full.agent_room_alias_localpart('beta')}:{server}")
    assert await _events(person, beta_room, REQUEST) == []


async def test_teams_collaborate_and_coordinate(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    person = await deployment.person(http)
    agents = {
        "xavier": {"backend": {"type": "echo", "prefix": "X:"}},
        "yvonne": {"backend": {"type": "echo", "prefix": "Y:"}},
        "boss": {
            "backend": {
                "type": "python",
                "entry": f"{PLUGINS}:delegating",
                "options": {"to": "xavier"},
            }
        },
    }
    teams = {
        "crowd": {"agents": ["xavier", "yvonne"], "mode": "collaborate", "lead": "yvonne"},
        "squad": {"agents": ["boss", "xavier"], "mode": "coordinate", "lead": "boss"},
    }
    config = deployment.config(agents=agents, teams=teams)
    await gateways(config, invite=[person.user_id], secrets=deployment.secrets)
    server = deployment.hs.server_name

    crowd = await person.join(f"#{config.agent_room_alias_localpart('crowd')}:{server}")
    asked = await person.say(crowd, "ideas?")
    text = await _final_text(person, crowd, asked, timeout=30)
    # One final answer: the lead's summary, built from every member's answer.
    assert (
        text.startswith("Y:Summarise") and "xavier: X:ideas?" in text and "yvonne: Y:ideas?" in text
    )
    assert len(await person.replies_to(crowd, asked)) == 1

    lobby = await person.join(f"#{config.naming.lobby_alias}:{server}")
    asked = await person.say(lobby, "@squad plan it")  # a team is mentioned like an agent
    text = await _final_text(person, lobby, asked, timeout=30)
    assert text == "boss got: X:task: @squad plan it"


async def test_deadline_fails_with_timeout_and_a_late_answer_is_not_delivered_twice(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    agents = _agents()
    agents["beta"] = {"backend": {"type": "echo", "prefix": "beta says ", "delay_s": 3}}
    config = salon_config(synapse, tmp_path, agents=agents, delegation={"deadline_s": 1})
    gateway = await gateways(config, invite=[person.user_id])
    server = synapse.server_name
    room = await person.join(f"#{config.agent_room_alias_localpart('alpha')}:{server}")
    asked = await person.say(room, "hurry")
    assert await _final_text(person, room, asked) == "alpha got: [TIMEOUT] beta"
    await asyncio.sleep(4)  # beta answers late
    assert gateway.store is not None
    (record,) = [r for r in await gateway.store.delegations.recent() if r.direction == "out"]
    assert record.state.value == "timeout" and record.result == "beta says task: hurry"
    alpha = config.agent_user_id("alpha", server)
    answers = [
        e
        for e in await person.history(room)
        if e["sender"] == alpha and "com.salon.turn" in e["content"]
    ]
    assert len(answers) == 1
    notices = [e["content"].get("body", "") for e in await person.history(room)]
    assert any("did not finish" in n for n in notices)


async def test_busy_while_working(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    # 4 s of work: a window wide enough to see it busy on a loaded machine too.
    agents = {"slowpoke": {"backend": {"type": "echo", "delay_s": 4}}}
    config = salon_config(synapse, tmp_path, agents=agents)
    await gateways(config, invite=[person.user_id])
    server = synapse.server_name
    room = await person.join(f"#{config.agent_room_alias_localpart('slowpoke')}:{server}")
    user = config.agent_user_id("slowpoke", server)

    async def status() -> str:
        state = await person.state(room)
        return next(
            e["content"]["status"]
            for e in state
            if e["type"] == "com.salon.agent.state" and e["state_key"] == user
        )

    async def becomes(wanted: str) -> None:  # polled: a loaded machine publishes late
        deadline = time.monotonic() + 30
        while (now := await status()) != wanted:
            assert time.monotonic() < deadline, f"{now!r}, never {wanted!r}"
            await asyncio.sleep(0.1)

    asked = await person.say(room, "take your time")
    await becomes("busy")
    assert not await person.replies_to(room, asked), "busy only once the work was done"
    await person.wait_reply(room, asked)
    await becomes("online")
