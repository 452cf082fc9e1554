"""Appservice mode across a homeserver restart: transactions the gateway failed to
acknowledge are kept by Synapse, sent again once it is back, and admitted once.

Salon's transaction log fails (a store error) while three messages arrive: their
events reach the inbox, but each transaction is answered 500, so Synapse marks the
appservice down and keeps the transactions. Synapse is stopped with them pending and
started again; its recoverer sends them again (same ids, same events): each is now
recorded once, each message has one inbox row, one turn and one reply.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from salon.app.gateway import Gateway
from salon.store.appservice import AppserviceTxns

from .test_crash import _replies_by_question
from .test_outage import own_deployment


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql, args))


async def test_unacknowledged_transactions_are_sent_again_after_a_restart(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed: list[str] = []
    failing = False
    record = AppserviceTxns.record

    async def flaky_record(self: AppserviceTxns, txn_id: str, seq: int | None = None) -> None:
        if failing:
            failed.append(txn_id)
            raise RuntimeError("disk I/O error")  # after the events were admitted
        await record(self, txn_id, seq)

    monkeypatch.setattr(AppserviceTxns, "record", flaky_record)
    with own_deployment("appservice", tmp_path) as (deployment, synapse):
        person = await deployment.person(http)
        config = deployment.config(agents={"echo": {"backend": {"type": "echo"}}})
        gateway = Gateway(config, invite=[person.user_id], secrets=deployment.secrets)
        await gateway.start()
        db = Path(config.store.sqlite_path)
        try:
            alias = f"#{config.agent_room_alias_localpart('echo')}:{deployment.hs.server_name}"
            room_id = await person.join(alias)
            first = await person.say(room_id, "before")
            await person.wait_reply(room_id, first)

            failing = True
            questions = ["q1", "q2", "q3"]
            asked = [await person.say(room_id, q) for q in questions]
            # Synapse tried, and was answered an error: it keeps the transaction.
            deadline = time.monotonic() + 20
            while not failed:
                assert time.monotonic() < deadline, "no transaction was attempted"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(synapse.stop)
            failing = False
            await asyncio.to_thread(synapse.start)
            later = await person.say(room_id, "q4")  # sent while Synapse recovers
            questions.append("q4")
            asked.append(later)

            deadline = time.monotonic() + 60
            while True:
                answers = await _replies_by_question(person, room_id)
                if all(answers.get(q) for q in questions):
                    break
                assert time.monotonic() < deadline, answers
                await asyncio.sleep(0.5)
            # Every failed transaction is sent again and recorded (the catch-up, which
            # waits behind the replies at start, may have answered its events first).
            deadline = time.monotonic() + 60
            while True:
                recorded = {t for (t,) in _rows(db, "SELECT txn_id FROM appservice_txns")}
                if failed and set(failed) <= recorded:
                    break
                assert time.monotonic() < deadline, (failed, recorded)
                await asyncio.sleep(0.5)
            await asyncio.sleep(2)  # room for a duplicate to show up, if there were one
            answers = await _replies_by_question(person, room_id)
            assert {q: answers.get(q) for q in questions} == {q: [q] for q in questions}
            for event_id in asked:
                assert _rows(db, "SELECT count(*) FROM inbox WHERE event_id = ?", event_id) == [
                    (1,)
                ]
                assert _rows(
                    db, "SELECT state, attempts FROM turns WHERE event_id = ?", event_id
                ) == [("replied", 1)]
        finally:
            await asyncio.wait_for(gateway.stop(), 30)
