"""Appservice mode: an event the homeserver never pushed is found and answered once.

Synapse can lose events queued behind an in-flight transaction when it stops
(Synapse issue #11637). The loss is simulated at the gateway: one transaction is
answered 200 but neither admitted nor recorded, as if it had never been pushed.
The catch-up (reading each joined room back to its mark with /messages) finds the
message after a gateway restart, or when the homeserver answers again after an
outage, and it is answered exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from salon._exceptions import MatrixConnectionError
from salon.app.gateway import Gateway
from salon.matrix.appservice import AppserviceSource
from salon.matrix.reachability import Reachability

from .test_crash import _replies_by_question
from .test_outage import own_deployment

LOST = "lost question"


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql, args))


def _lose_pushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Transactions carrying the message ``LOST`` are answered 200 and dropped; the
    ids of the events dropped are returned (filled as it happens)."""
    dropped: list[str] = []
    transaction = AppserviceSource._transaction

    async def lossy(self: AppserviceSource, request: web.Request) -> web.Response:
        body = await request.json()
        events = body.get("events") or []
        if any((e.get("content") or {}).get("body") == LOST for e in events):
            dropped.extend(e["event_id"] for e in events)
            return web.json_response({})  # as if never pushed
        return await transaction(self, request)

    monkeypatch.setattr(AppserviceSource, "_transaction", lossy)
    return dropped


async def _until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def _answered_once(person: Any, room_id: str, db: Path, event_id: str) -> None:
    async def answered() -> bool:
        return bool((await _replies_by_question(person, room_id)).get(LOST))

    await _until(answered, "the lost message was never answered")
    await asyncio.sleep(2)  # room for a duplicate to show up, if there were one
    assert (await _replies_by_question(person, room_id))[LOST] == [LOST]
    assert _rows(db, "SELECT count(*) FROM inbox WHERE event_id = ?", event_id) == [(1,)]
    assert _rows(db, "SELECT state, attempts FROM turns WHERE event_id = ?", event_id) == [
        ("replied", 1)
    ]


async def _answer_then_lose(
    person: Any, config: Any, deployment: Any, dropped: list[str]
) -> tuple[str, str]:
    """Join echo's room, have "before" answered, then say ``LOST``, whose transaction
    is dropped; the room and the lost message's event id."""
    alias = f"#{config.agent_room_alias_localpart('echo')}:{deployment.hs.server_name}"
    room_id = await person.join(alias)
    first = await person.say(room_id, "before")
    await person.wait_reply(room_id, first)
    lost = await person.say(room_id, LOST)

    async def was_dropped() -> bool:
        return lost in dropped

    await _until(was_dropped, "the transaction was never pushed", 20)
    return room_id, str(lost)


async def test_a_message_never_pushed_is_answered_after_a_gateway_restart(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = _lose_pushes(monkeypatch)
    with own_deployment("appservice", tmp_path) as (deployment, _synapse):
        person = await deployment.person(http)
        config = deployment.config(agents={"echo": {"backend": {"type": "echo"}}})
        db = Path(config.store.sqlite_path)
        gateway = Gateway(config, invite=[person.user_id], secrets=deployment.secrets)
        await gateway.start()
        try:
            room_id, lost = await _answer_then_lose(person, config, deployment, dropped)
            assert _rows(db, "SELECT count(*) FROM inbox WHERE event_id = ?", lost) == [(0,)]
        finally:
            await asyncio.wait_for(gateway.stop(), 30)

        gateway = Gateway(config, invite=[person.user_id], secrets=deployment.secrets)
        await gateway.start()
        try:
            await _answered_once(person, room_id, db, lost)
            assert (await _replies_by_question(person, room_id))["before"] == ["before"]
        finally:
            await asyncio.wait_for(gateway.stop(), 30)


async def test_a_message_never_pushed_is_answered_when_the_homeserver_is_back(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = _lose_pushes(monkeypatch)
    probes: list[Reachability] = []
    init = Reachability.__init__

    def keep(self: Reachability, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        probes.append(self)

    monkeypatch.setattr(Reachability, "__init__", keep)
    with own_deployment("appservice", tmp_path) as (deployment, synapse):
        person = await deployment.person(http)
        config = deployment.config(agents={"echo": {"backend": {"type": "echo"}}})
        db = Path(config.store.sqlite_path)
        gateway = Gateway(config, invite=[person.user_id], secrets=deployment.secrets)
        await gateway.start()
        try:
            room_id, lost = await _answer_then_lose(person, config, deployment, dropped)
            await asyncio.to_thread(synapse.stop)
            # A request of the gateway fails meanwhile (an idle appservice makes none).
            (reachability,) = probes
            reachability.failed(MatrixConnectionError("connection refused"))

            async def down() -> bool:
                return reachability.down

            await _until(down, "the outage was never noticed", 20)
            assert _rows(db, "SELECT count(*) FROM inbox WHERE event_id = ?", lost) == [(0,)]
            await asyncio.to_thread(synapse.start)
            await _answered_once(person, room_id, db, lost)
        finally:
            await asyncio.wait_for(gateway.stop(), 30)


async def test_a_transaction_never_pushed_is_found_by_the_next_ones_number(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synapse can leave one transaction unsent for good (created while it thought us
    down, just as its recoverer finished) and go on with the next number. No restart,
    no outage: the next transaction's number shows the gap, and the rooms are read
    back at once."""
    dropped = _lose_pushes(monkeypatch)
    with own_deployment("appservice", tmp_path) as (deployment, _synapse):
        person = await deployment.person(http)
        config = deployment.config(agents={"echo": {"backend": {"type": "echo"}}})
        db = Path(config.store.sqlite_path)
        gateway = Gateway(config, invite=[person.user_id], secrets=deployment.secrets)
        await gateway.start()
        try:
            room_id, lost = await _answer_then_lose(person, config, deployment, dropped)
            assert _rows(db, "SELECT count(*) FROM inbox WHERE event_id = ?", lost) == [(0,)]
            after = await person.say(room_id, "after")  # pushed with the next number
            await person.wait_reply(room_id, after)
            await _answered_once(person, room_id, db, lost)
            assert (await _replies_by_question(person, room_id))["after"] == ["after"]
        finally:
            await asyncio.wait_for(gateway.stop(), 30)
