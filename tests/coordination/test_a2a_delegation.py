"""Delegating to a remote A2A agent (the official ``a2a-sdk`` server in the test) on a
fake homeserver and a real SQLite store: the outcome, the notices, the hop limit, the
deadline and a failing remote, each handed back once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests.a2a_remote import Remote, serving
from tests.coordination.test_delegation_manager import ORIGIN_EVENT, World
from tests.gateway.helpers import now_ms, open_store

from salon.config.agents import A2AAgentConfig
from salon.coordination.a2a_out import A2ADelegationManager
from salon.coordination.protocol import new_request
from salon.store.delegations import DelegationPhase

TOKEN = "s3cret"


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[World]:  # type: ignore[no-untyped-def]
    store = await open_store(tmp_path)
    yield await World.make(store)
    await store.close()


@pytest.fixture
async def remote() -> AsyncIterator[Remote]:
    async with serving(Remote(token=TOKEN)) as remote:
        yield remote


def manager_for(world: World, remote: Remote, *, token: str = TOKEN, deadline_s: float = 60):
    manager = A2ADelegationManager(
        world.store,
        world.directory,
        can_delegate_to={"coder": ["writer", "remote"]},
        descriptions={"writer": "Writes prose", "remote": "Far away"},
        deadline_s=deadline_s,
    )
    remotes = {"remote": A2AAgentConfig(url=remote.url, token_env="REMOTE_TOKEN")}
    manager.use_remotes(remotes, {"REMOTE_TOKEN": token}, hop_limit=2)

    async def report(record, outcome) -> None:  # type: ignore[no-untyped-def]
        world.reports.append((record, outcome))

    manager.report = report
    return manager


def notices(world: World) -> list[str]:
    return [e["content"]["body"] for e in world.hs.messages_in(world.origin_room)]


async def test_a_turn_gets_the_remote_answer_with_the_notices(world: World, remote: Remote) -> None:
    manager = manager_for(world, remote)
    assert ("remote", "Far away") in manager.targets("coder")
    ask = manager.delegate(
        "coder", "remote", "add 1 and 2", origin_room=world.origin_room, origin_event=ORIGIN_EVENT
    )
    twin = manager.delegate(
        "coder", "remote", "add 1 and 2", origin_room=world.origin_room, origin_event=ORIGIN_EVENT
    )
    first, second = await asyncio.gather(ask, twin)
    assert first.ok and first.text == "remote did: add 1 and 2" and second == first
    [record] = await world.store.delegations.recent(5)
    assert record.state is DelegationPhase.COMPLETED and record.reinjected
    assert remote.calls == {record.id: 1}
    assert notices(world) == ["coder → remote: add 1 and 2", "remote finished the task from coder."]
    assert world.reports == []  # the turn took it


async def test_the_hop_limit_holds_for_remote_agents(world: World, remote: Remote) -> None:
    manager = manager_for(world, remote)
    deadline = now_ms() + 60_000
    root = new_request("writer", "coder", "t", deadline_ts=deadline)
    child = new_request("coder", "writer", "t", deadline_ts=deadline, parent=root)
    grandchild = new_request("writer", "coder", "t", deadline_ts=deadline, parent=child)
    outcome = await manager.delegate("coder", "remote", "t", parent=grandchild)
    assert not outcome.ok and outcome.text == "[REJECTED] hop limit 2 exceeded"
    assert await world.store.delegations.recent(5) == [] and not remote.calls


async def test_a_remote_past_the_deadline_times_out_once(world: World, remote: Remote) -> None:
    remote.delay_s = 2.0
    manager = manager_for(world, remote, deadline_s=0.5)
    task = asyncio.ensure_future(
        manager.delegate("coder", "remote", "slow", origin_room=world.origin_room)
    )
    await asyncio.sleep(0.8)
    await manager.expire()
    outcome = await task
    assert not outcome.ok and outcome.text == "[TIMEOUT] remote"
    await asyncio.sleep(2.0)  # the remote's answer comes after the end
    [record] = await world.store.delegations.recent(5)
    assert record.state is DelegationPhase.TIMEOUT and world.reports == []
    assert notices(world)[-1] == "remote did not finish the task from coder in time."


async def test_a_refusing_remote_fails_the_delegation(world: World, remote: Remote) -> None:
    manager = manager_for(world, remote, token="wrong")
    outcome = await manager.delegate("coder", "remote", "x", origin_room=world.origin_room)
    assert not outcome.ok and outcome.text.startswith("[FAILED]")
    [record] = await world.store.delegations.recent(5)
    assert record.state is DelegationPhase.FAILED and record.reinjected
    assert remote.refused == 1 and notices(world)[-1].startswith("remote could not do the task")


async def test_a_reload_changes_the_remotes(world: World, remote: Remote) -> None:
    manager = manager_for(world, remote)
    manager.reload_remotes(
        {
            "other": A2AAgentConfig(url="http://127.0.0.1:9", token_env="REMOTE_TOKEN"),
            "untokened": A2AAgentConfig(url="http://127.0.0.1:9", token_env="NOT_SET_ANYWHERE"),
        }
    )
    assert set(manager.remotes) == {"other"}  # the one without its token is left out
