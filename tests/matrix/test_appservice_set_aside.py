"""Appservice mode: a parked transaction that always fails is set aside after a few
starts (its tries counted in the store), so it cannot stop every start; a transient
failure (the store down) counts nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog
from tests.gateway.helpers import open_store, sample

from salon._exceptions import StoreError
from salon.ids import UserId
from salon.matrix.appservice import AppserviceSource, ListenAddress
from salon.matrix.as_txns import LEFTOVER_AGE_MS, PARKED_MAX_TRIES
from salon.matrix.events import InboundEvent, Invite
from salon.store import Store

ROUTER = UserId("@salon:localhost")
TOKEN = "hs-secret"
METRIC = "salon_appservice_set_aside_total"
ANY_PORT = ListenAddress(port=0)


class Sink:
    """Admits every event but ``$poison`` (a bug: fails the same way every time)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.admitted: list[str] = []
        self.error = error

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        if self.error is not None:
            raise self.error
        if any(e.event_id == "$poison" for e in events):
            raise ValueError("cannot read $poison")
        self.admitted += [e.event_id for e in events]

    async def invited(self, invite: Invite) -> None: ...


def body(event_id: str) -> str:
    event = {
        "event_id": event_id,
        "room_id": "!room:localhost",
        "sender": "@bob:localhost",
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hi"},
        "origin_server_ts": 1000,
    }
    return json.dumps({"events": [event]})


async def start(store: Store, sink: Sink) -> None:
    source = AppserviceSource(
        TOKEN, store.appservice_txns, router=ROUTER, owns=lambda u: False, listen=ANY_PORT
    )
    try:
        await source.start(sink)
    finally:
        await source.stop()


async def test_a_transaction_failing_every_start_is_set_aside_and_the_start_goes_on(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path)
    try:
        txns = store.appservice_txns
        for n, event_id in enumerate(("$a", "$poison", "$b"), 1):
            await txns.park(f"t{n}", n, body(event_id))
        before = sample(METRIC)
        for tries in range(1, PARKED_MAX_TRIES):  # each failed start counts one try
            sink = Sink()
            with pytest.raises(ValueError, match="poison"):
                await start(store, sink)
            # In order: the one before is in, the one after waits behind it.
            assert [p.txn_id for p in await txns.parked()] == ["t2", "t3"]
            assert (await txns.parked())[0].tries == tries
        sink = Sink()
        with structlog.testing.capture_logs() as logs:
            await start(store, sink)  # the last try: set aside, and the start goes on
        assert sink.admitted == ["$b"] and await txns.parked() == []
        [aside] = await txns.set_aside()
        assert (aside.txn_id, aside.tries) == ("t2", PARKED_MAX_TRIES)
        assert aside.reason == "ValueError: cannot read $poison"
        assert json.loads(aside.body)["events"][0]["event_id"] == "$poison"  # kept
        assert sample(METRIC) == before + 1
        warned = [e for e in logs if e["event"] == "appservice.parked_set_aside"]
        assert len(warned) == 1 and warned[0]["log_level"] == "warning"

        await start(store, Sink())  # set aside: not tried again
        assert (await txns.set_aside())[0].tries == PARKED_MAX_TRIES
        assert await txns.retry() == 1  # the operator fixed it: due again
        with pytest.raises(ValueError):
            await start(store, Sink())
        assert [(p.txn_id, p.tries) for p in await txns.parked()] == [("t2", 1)]
    finally:
        await store.close()


async def test_a_transient_failure_counts_no_try(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        await store.appservice_txns.park("t1", 1, body("$a"))
        for _ in range(PARKED_MAX_TRIES + 1):  # the store down at every start
            with pytest.raises(StoreError):
                await start(store, Sink(StoreError("database is locked")))
        [kept] = await store.appservice_txns.parked()
        assert kept.tries == 0 and await store.appservice_txns.set_aside() == []
        sink = Sink()
        await start(store, sink)  # back up: admitted
        assert sink.admitted == ["$a"] and await store.appservice_txns.parked() == []
    finally:
        await store.close()


async def test_a_running_gateway_sets_a_failing_leftover_aside_too(tmp_path: Path) -> None:
    """Left by a gateway that died while starting, admitted by a running one (its
    sweep): failing, it is counted and set aside the same way, not retried for ever;
    one parked just now (by a gateway still starting) is not a leftover."""
    store = await open_store(tmp_path)
    try:
        txns = store.appservice_txns
        source = AppserviceSource(TOKEN, txns, router=ROUTER, owns=lambda u: False, listen=ANY_PORT)
        sink = Sink()
        await source.start(sink)
        try:
            await txns.park("t1", 1, body("$poison"))
            await txns.park("t2", 2, body("$b"))
            await store.db.execute(
                "UPDATE appservice_parked SET at = at - $1", LEFTOVER_AGE_MS + 1000
            )
            await txns.park("t3", 3, body("$c"))  # parked just now
            for _ in range(PARKED_MAX_TRIES - 1):
                with pytest.raises(ValueError):
                    await source._leftovers()
            await source._leftovers()
        finally:
            await source.stop()
        assert sink.admitted == ["$b"]
        assert [p.txn_id for p in await txns.set_aside()] == ["t1"]
        assert [p.txn_id for p in await txns.parked()] == ["t3"]
    finally:
        await store.close()
