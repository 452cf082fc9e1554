"""A2A in and out on a real gateway and the session Synapse, with the official ``a2a-sdk``
on the other side: its client against an agent's ``/a2a/<id>``, and its server as a
remote agent (``a2a_agents:``) that a person's ``!delegate`` reaches, the result
reported in the room once (also across kill -9 of the gateway mid-call)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.types import Role, SendMessageRequest, TaskState
from tests.a2a_remote import Remote, serving

from salon.app.gateway import Gateway
from salon.store.delegations import DelegationDirection, DelegationPhase

from .conftest import Person, salon_config
from .test_crash import running

Start = Callable[..., Awaitable[Gateway]]
TASK = "sum 2 and 2"
RESULT = f"remote did: {TASK}"


async def _until(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if result := await check():
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _bodies(person: Person, room_id: str) -> list[str]:
    history = await person.history(room_id, limit=200)
    return [e["content"].get("body", "") for e in history if e["type"] == "m.room.message"]


async def test_an_agent_answers_the_sdk_client_through_the_gateway(
    synapse: Any, tmp_path: Path, gateways: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = f"SALON_TEST_API_TOKEN_{secrets.token_hex(3).upper()}"
    token = secrets.token_urlsafe(16)
    monkeypatch.setenv(env, token)
    agents = {
        "echo": {"label": "Echo", "description": "Says it back", "backend": "echo"},
        "parrot": {"backend": {"type": "echo", "prefix": "🦜 "}, "a2a": False},
    }
    api = {"listen": "127.0.0.1:0", "token_env": env, "a2a": True}
    gateway = await gateways(salon_config(synapse, tmp_path, agents=agents, api=api))
    assert gateway.api is not None and gateway.store is not None
    base = f"{gateway.api.url}/a2a/echo"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        assert card.name == "Echo" and card.skills[0].description == "Says it back"
        answers = []
        for streaming in (False, True):
            client = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(
                card
            )
            message = new_text_message(f"hello {streaming}", role=Role.ROLE_USER)
            answers.append(
                [e async for e in client.send_message(SendMessageRequest(message=message))]
            )
        [sent], streamed = answers
        assert get_message_text(sent.message) == "hello False"
        turn = await gateway.store.turns.get(sent.message.metadata["salonTurn"], "echo")
        assert turn is not None and turn.kind == "api"
        text = "".join(
            p.text
            for e in streamed
            if e.HasField("artifact_update")
            for p in e.artifact_update.artifact.parts
        )
        assert text == "hello True"
        assert streamed[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
        # Off for parrot (its own `a2a: false`), and never without the token.
        assert (
            await http.get(f"{gateway.api.url}/a2a/parrot/.well-known/agent-card.json")
        ).status_code == 404
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(f"{base}/.well-known/agent-card.json")).status_code == 401


async def test_delegate_to_a_remote_a2a_agent_reports_once(
    synapse: Any,
    tmp_path: Path,
    gateways: Start,
    person: Person,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = f"SALON_TEST_REMOTE_TOKEN_{secrets.token_hex(3).upper()}"
    monkeypatch.setenv(env, "remote-secret")
    async with serving(Remote(token="remote-secret")) as remote:
        remotes = {"remote": {"url": remote.url, "token_env": env, "description": "Remote"}}
        config = salon_config(synapse, tmp_path, a2a_agents=remotes)
        gateway = await gateways(config, invite=[person.user_id])
        assert gateway.store is not None
        room = await person.join(
            f"#{config.agent_room_alias_localpart('echo')}:{synapse.server_name}"
        )
        await person.say(room, f"!delegate remote {TASK}")

        async def reported() -> list[str]:
            return [b for b in await _bodies(person, room) if RESULT in b]

        await _until("the result in the room", reported)
        [record] = [
            r
            for r in await gateway.store.delegations.recent(10)
            if r.direction is DelegationDirection.OUT
        ]

        async def delivered() -> bool:
            current = await gateway.store.delegations.get(record.id)
            return current is not None and current.reinjected

        await _until("the result marked delivered", delivered)
        current = await gateway.store.delegations.get(record.id)
        assert current is not None and current.state is DelegationPhase.COMPLETED
        assert current.result == RESULT and current.target_room == "a2a:remote"
        assert remote.calls == {record.id: 1} and remote.texts == [TASK]
        bodies = await _bodies(person, room)
        assert len([b for b in bodies if RESULT in b]) == 1, bodies
        assert f"echo → remote: {TASK}" in bodies
        assert "remote finished the task from echo." in bodies


@pytest.mark.subprocess
async def test_a_remote_call_cut_by_kill_9_is_made_again_and_reported_once(
    synapse: Any, tmp_path: Path, person: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = f"SALON_TEST_REMOTE_TOKEN_{secrets.token_hex(3).upper()}"
    monkeypatch.setenv(env, "remote-secret")  # the child process inherits it
    async with serving(Remote(token="remote-secret", delay_s=3)) as remote:
        remotes = {"remote": {"url": remote.url, "token_env": env}}
        access = {"admins": [person.user_id]}  # invited to the agents' rooms
        config = salon_config(synapse, tmp_path, a2a_agents=remotes, access=access)
        data = config.model_dump(mode="json", exclude_none=True)
        data["agents"] = {"echo": data["agents"]["echo"]}
        path = tmp_path / "salon.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        alias = f"#{config.agent_room_alias_localpart('echo')}:{synapse.server_name}"

        def rows() -> list[sqlite3.Row]:
            db = sqlite3.connect(tmp_path / "salon.db", timeout=10)
            db.row_factory = sqlite3.Row
            try:
                return db.execute("SELECT * FROM delegations WHERE direction = 'out'").fetchall()
            finally:
                db.close()

        async def asked() -> bool:
            return bool(remote.calls)

        with running(path) as first:
            first.wait_ready()
            room = await person.join(alias)
            await person.say(room, f"!delegate remote {TASK}")
            await _until("the remote to be called", asked)
            first.kill()  # mid-call: the remote answers in 3 s, to nobody
        [row] = rows()
        assert row["state"] in ("pending", "sent") and not row["reinjected"]
        with running(path) as second:
            second.wait_ready()

            async def delivered() -> bool:
                [now] = rows()
                return bool(now["reinjected"])

            await _until("the result delivered after the restart", delivered, 60)
        [row] = rows()
        assert row["state"] == "completed" and row["result"] == RESULT
        # Asked again with the same message id (a remote that deduplicates answers once).
        assert remote.calls == {row["id"]: 2}
        bodies = await _bodies(person, room)
        assert len([b for b in bodies if RESULT in b]) == 1, bodies
