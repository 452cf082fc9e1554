"""A homeserver outage while replies are due is waited out (issue 8, finding 1).

Ten messages to an agent that takes 5 s, then Synapse is stopped for 10 s and
started again (same port, same database): every message is answered exactly
once, nobody is told "gave up", and no turn was run twice — the sends waited,
the backend did not run again and ``max_attempts`` was not spent. With Salon's
default backoff (5 s doubling to 60 s), the first reply still goes out within
2 s of Synapse answering again: the waits end when the homeserver is back
(issue 15), not when the backoff runs out. That figure is read from the first
reply's own timestamp on Synapse (when it took the send), so the time the store
and the test take to notice it on a loaded machine does not count. The same in
both homeserver modes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from salon.app.gateway import Gateway
from salon.devserver.synapse import SynapseProcess
from salon.ids import AgentId
from salon.store.records import TurnState

from ..conftest import TestHomeserver, start_synapse
from .modes import MODES, Deployment, appservice_deployment, client_deployment

AGENT = AgentId("slow")
OUTAGE_S = 10.0
# Long enough that all ten run at once and Synapse is down before any is done, also
# on a loaded machine (turns starting late, a slow stop); short of the outage, so the
# replies all fall due while it is down.
TURN_S = 5.0
FIRST_REPLY_WITHIN_S = 2.0


@contextmanager
def own_deployment(mode: str, tmp_path: Path) -> Iterator[tuple[Deployment, SynapseProcess]]:
    """A Synapse of this test alone (stopping it disturbs no other test), in ``mode``."""
    with ExitStack() as stack:

        def start(**settings: Any) -> TestHomeserver:
            return stack.enter_context(start_synapse(tmp_path / "synapse", **settings))

        if mode == "client":
            deployment = client_deployment(tmp_path, start())
        else:
            deployment = appservice_deployment(tmp_path, start)
        assert deployment.hs.process is not None
        yield deployment, deployment.hs.process


def _outage_waits() -> float:
    return REGISTRY.get_sample_value("salon_outage_waits_total") or 0.0


@pytest.mark.parametrize("mode", MODES)
async def test_replies_due_during_a_homeserver_restart_are_sent_once_without_rerun(
    mode: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with own_deployment(mode, tmp_path) as (deployment, synapse):
        homeserver = deployment.hs
        person = await deployment.person(http)
        config = deployment.config(
            agents={AGENT: {"backend": {"type": "echo", "delay_s": TURN_S}}},
            # All ten run at once, so all ten replies fall due during the outage.
            turns={"per_sender": 10, "per_agent": 10},
            # Salon's defaults, not the suite's fast ones: the outage is waited out with
            # the backoff a deployment really has.
            sync={"backoff_initial_s": 5, "backoff_max_s": 60},
            data_dir=str(tmp_path / "data"),
        )
        gateway = Gateway(config, invite=[person.user_id], secrets=deployment.secrets)
        await gateway.start()
        try:
            store = gateway.store
            assert store is not None
            alias = f"#{config.agent_room_alias_localpart(AGENT)}:{homeserver.server_name}"
            room_id = await person.join(alias)
            questions = [f"question {i}" for i in range(10)]
            asked = {await person.say(room_id, q): q for q in questions}

            # Every turn is running (the backend sleeps) before the homeserver goes.
            deadline = time.monotonic() + 30
            while True:
                rows = [await store.turns.get(e, AGENT) for e in asked]
                if all(r is not None and r.state is TurnState.RUNNING for r in rows):
                    break
                assert time.monotonic() < deadline, rows
                await asyncio.sleep(0.05)
            waits_before = _outage_waits()
            stopped_at = time.monotonic()
            await asyncio.to_thread(synapse.stop)
            # Stopped before any reply went out: all ten are due while it is down.
            rows = [await store.turns.get(e, AGENT) for e in asked]
            assert all(r is not None and r.state is TurnState.RUNNING for r in rows), (
                f"a reply went out before Synapse stopped ({time.monotonic() - stopped_at:.1f} s)"
            )
            await asyncio.sleep(OUTAGE_S - (time.monotonic() - stopped_at))
            # The sends really hit the outage (and waited instead of failing the turn).
            assert _outage_waits() > waits_before
            rows = [await store.turns.get(e, AGENT) for e in asked]
            assert all(r is not None and r.state is TurnState.RUNNING for r in rows), rows
            await asyncio.to_thread(synapse.start)  # returns once /versions answers
            back = time.monotonic()
            back_ms = time.time() * 1000  # Synapse stamps events with this clock

            deadline = back + 60
            while True:
                rows = [await store.turns.get(e, AGENT) for e in asked]
                if all(r is not None and not r.open for r in rows):
                    break
                assert time.monotonic() < deadline, rows
                await asyncio.sleep(0.05)
            all_s = time.monotonic() - back
            # Every turn closed after its sends: the room now shows all there will be.
            for row in rows:
                assert row is not None
                assert row.state is TurnState.REPLIED, row
                assert row.attempts == 1, row  # the backend ran once; nothing was re-run
                assert row.error is None, row
            history = [
                e
                for e in await person.history(room_id, limit=300)
                if e["type"] == "m.room.message" and e["sender"] != person.user_id
            ]
            assert not [e for e in history if "gave up" in e["content"].get("body", "")]
            replies: dict[str, list[str]] = {q: [] for q in questions}
            for event in history:
                rel = event["content"].get("m.relates_to") or {}
                target = (rel.get("m.in_reply_to") or {}).get("event_id")
                if rel.get("rel_type") != "m.replace" and target in asked:
                    replies[asked[target]].append(event["content"]["body"])
            assert replies == {q: [q] for q in questions}
            # When Synapse took the first reply, after it answered again (not when the
            # store or this test saw it: that is the machine's load, not the feature).
            sent_ms = [
                e["origin_server_ts"]
                for e in history
                if (e["content"].get("m.relates_to") or {}).get("m.in_reply_to")
            ]
            first_s = (min(sent_ms) - back_ms) / 1000
            print(f"outage: first reply {first_s:.2f} s, all ten {all_s:.2f} s after Synapse")
            assert first_s < FIRST_REPLY_WITHIN_S, (first_s, all_s)
            assert {r.reply_event_id for r in rows if r is not None} == {
                e["event_id"]
                for e in history
                if (e["content"].get("m.relates_to") or {}).get("m.in_reply_to")
            }
            # Talk goes on after the restart (in appservice mode Synapse on SQLite numbers
            # its transactions from 1 again: they are new ones, not repeats to drop).
            after = await person.say(room_id, "after the restart")
            reply = await person.wait_reply(room_id, after, timeout=30)
            assert reply["content"]["body"] == "after the restart"
        finally:
            await asyncio.wait_for(gateway.stop(), 30)
