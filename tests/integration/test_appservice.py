"""Appservice mode against a real Synapse that loads Salon's registration.

Each test starts its own Synapse (the registration must be in its config at start)
with the registration `salon appservice register` would write for the test's config.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.matrix.appservice import AppserviceSource

from ..conftest import TestHomeserver, register_user
from .conftest import Person
from .modes import SECRETS, TOKENS, appservice_deployment
from .test_crash import _replies_by_question, running


@pytest.fixture
def as_setup(
    tmp_path: Path, synapse_factory: Callable[..., TestHomeserver]
) -> tuple[TestHomeserver, SalonConfig]:
    """A Synapse with the registration of a config in appservice mode, and that config."""
    deployment = appservice_deployment(tmp_path, synapse_factory)
    return deployment.hs, deployment.base


async def _person(hs: TestHomeserver, http: aiohttp.ClientSession) -> Person:
    return Person(await register_user(hs), hs.base_url, http)


async def _agent_room(person: Person, config: SalonConfig, agent: str) -> str:
    return await person.join(f"#{config.agent_room_alias_localpart(agent)}:localhost")


def _source(gateway: Gateway) -> AppserviceSource:
    source = gateway._running.homeserver.source if gateway._running else None
    assert isinstance(source, AppserviceSource)
    return source


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql, args))


async def test_message_reply_and_command(
    as_setup: tuple[TestHomeserver, SalonConfig],
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    hs, config = as_setup
    person = await _person(hs, http)
    await gateways(config, invite=[person.user_id], secrets=SECRETS)
    room_id = await _agent_room(person, config, "parrot")
    asked = await person.say(room_id, "hello over the appservice")
    reply = await person.wait_reply(room_id, asked)
    assert reply["sender"] == config.agent_user_id("parrot", "localhost")
    assert reply["content"]["body"].startswith("🦜 ")
    # No agent logged in: no access token or device was made for any of them.
    db = Path(config.store.sqlite_path)
    assert _rows(db, "SELECT user_id FROM identities WHERE access_token IS NOT NULL") == []
    asked = await person.say(room_id, "!help")
    answer = await person.wait_reply(room_id, asked)
    # The gateway's own answer (a notice), listing the commands.
    assert answer["content"]["msgtype"] == "m.notice", answer
    assert answer["content"]["com.salon.turn"]["gateway"] is True, answer
    assert "!agent — list the agents" in answer["content"]["body"], answer
    # Delivered as transactions, each recorded once admitted.
    assert _rows(db, "SELECT count(*) FROM appservice_txns")[0][0] >= 1


async def test_replayed_transaction_is_answered_without_work(
    as_setup: tuple[TestHomeserver, SalonConfig],
    gateways: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
) -> None:
    hs, config = as_setup
    person = await _person(hs, http)
    gateway = await gateways(config, invite=[person.user_id], secrets=SECRETS)
    room_id = await _agent_room(person, config, "echo")
    first = await person.say(room_id, "a real one")
    await person.wait_reply(room_id, first)
    assert config.homeserver is not None and config.homeserver.appservice is not None
    url = f"{config.homeserver.appservice.public_url}/_matrix/app/v1/transactions/replay-1"
    headers = {"Authorization": f"Bearer {TOKENS[1]}"}

    def event(n: int) -> dict[str, Any]:
        return {
            "event_id": f"$replayed-{n}",
            "room_id": room_id,
            "sender": person.user_id,
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": f"replayed {n}"},
            "origin_server_ts": int(time.time() * 1000),
        }

    db = Path(config.store.sqlite_path)
    # A full transaction (Synapse sends up to 100 events), the last one for the agent.
    rel = {"rel_type": "m.annotation", "event_id": "$nothing-of-ours", "key": "👍"}
    notices = [
        {
            **event(n),
            "event_id": f"$noise-{n}",
            "type": "m.reaction",
            "content": {"m.relates_to": rel},
        }
        for n in range(99)
    ]
    async with http.put(url, json={"events": [*notices, event(1)]}, headers=headers) as r:
        assert r.status == 200
        # Admitted before the answer: the row is there the moment the 200 is.
        assert _rows(db, "SELECT event_id FROM inbox WHERE event_id = '$replayed-1'")
    repeated = {"events": [*notices, event(1)]}
    async with http.put(url, json=repeated, headers=headers) as r:
        assert r.status == 200
    assert _source(gateway).repeats == 1
    # Also after a restart: the transaction is durable.
    await gateway.stop()
    gateway = await gateways(config, invite=[person.user_id], secrets=SECRETS)
    async with http.put(url, json=repeated, headers=headers) as r:
        assert r.status == 200
    assert _source(gateway).repeats == 1
    assert _rows(db, "SELECT event_id FROM inbox WHERE event_id LIKE '$replayed-%'") == [
        ("$replayed-1",)
    ]
    assert _rows(db, "SELECT count(*) FROM appservice_txns WHERE txn_id LIKE '%:replay-1:%'") == [
        (1,)
    ]
    # A wrong homeserver token is refused, and nothing is admitted.
    bad = {"Authorization": "Bearer not-the-token"}
    async with http.put(url[:-1] + "9", json={"events": [event(4)]}, headers=bad) as r:
        assert r.status == 403
        assert (await r.json())["errcode"] == "M_FORBIDDEN"
    assert (
        _rows(db, "SELECT count(*) FROM appservice_txns WHERE txn_id LIKE '%:replay-9:%'")[0][0]
        == 0
    )
    # The one replayed event got its one turn.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _rows(db, "SELECT state FROM turns WHERE event_id = '$replayed-1'") == [("replied",)]:
            break
        await asyncio.sleep(0.2)
    assert _rows(db, "SELECT event_id, state FROM turns WHERE event_id LIKE '$replayed-%'") == [
        ("$replayed-1", "replied")
    ]


async def test_kill_9_every_message_answered_exactly_once(
    as_setup: tuple[TestHomeserver, SalonConfig],
    http: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Transactions the killed gateway never answered are sent again by Synapse; those
    it answered are in the inbox: every message is answered exactly once."""
    hs, config = as_setup
    person = await _person(hs, http)
    data = config.model_dump(mode="json", exclude_none=True)
    data["agents"] = {"slow": {"backend": {"type": "echo", "delay_s": 1.0}}}
    data["access"] = {"admins": [person.user_id]}
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    alias = f"#{config.naming.agent_room_alias.replace('{id}', 'slow')}:localhost"
    db = tmp_path / "salon.db"
    questions = [f"q{i}" for i in range(8)]

    with running(path) as first:
        first.wait_ready()
        room_id = await person.join(alias)
        sent = [await person.say(room_id, q) for q in questions[:3]]
        await person.wait_reply(room_id, sent[0])
        later = [await person.say(room_id, q) for q in questions[3:6]]
        # Killed right after a transaction was answered (its event is in the inbox).
        deadline = time.monotonic() + 10
        while not _rows(db, "SELECT 1 FROM inbox WHERE event_id = ?", later[0]):
            assert time.monotonic() < deadline, "the transaction never arrived"
            await asyncio.sleep(0.02)
        first.kill()
    for q in questions[6:]:
        await person.say(room_id, q)  # queued by Synapse while the gateway is down

    with running(path) as second:
        second.wait_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answers = await _replies_by_question(person, room_id)
            if all(answers.get(q) for q in questions):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # room for a duplicate to show up, if there were one
        answers = await _replies_by_question(person, room_id)
    assert answers == {q: [q] for q in questions}
    asked = [e for e in _rows(db, "SELECT event_id FROM inbox WHERE sender = ?", person.user_id)]
    assert len(asked) == len(questions)
    turns = _rows(db, "SELECT count(*) FROM turns WHERE agent_id = 'slow' AND state = 'replied'")
    assert turns[0][0] == len(questions)
