"""A message's writes on the way to its turn (the gateway on the fake homeserver): the
routing decision goes to the store with the turn's admission, in one trip; a failure
of that trip writes neither, and the event's retry writes both, answered once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.app.test_assemble import FakeSource, config, logged_in, steps  # noqa: F401
from tests.fake_matrix import FakeMatrixAPI
from tests.gateway.helpers import event, eventually

from salon._exceptions import StoreError
from salon.app.gateway import Gateway
from salon.ids import AgentId
from salon.store.records import TurnState

PERSON = "@alice:localhost"
Statements = Sequence[tuple[str, Sequence[Any]]]


def echoed(api: FakeMatrixAPI, body: str) -> int:
    return sum(c["content"].get("body") == body for c in api.calls_to("send_event"))


async def test_the_decision_is_written_with_the_turns_admission(
    tmp_path: Path,
    steps: list[str],  # noqa: F811
    logged_in: dict[str, FakeMatrixAPI],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = Gateway(config(tmp_path, access={"allowed_users": [PERSON]}), name="test")
    state = await gateway.start()
    try:
        assert gateway.running is not None
        store = gateway.running.store
        batches: list[list[str]] = []
        alone: list[str] = []
        batch, execute = store.db.batch, store.db.execute

        async def spied_batch(statements: Statements) -> list[int]:
            batches.append([sql for sql, _ in statements])
            return await batch(statements)

        async def spied_execute(sql: str, *args: Any) -> int:
            alone.append(sql)
            return await execute(sql, *args)

        monkeypatch.setattr(store.db, "batch", spied_batch)
        monkeypatch.setattr(store.db, "execute", spied_execute)
        coder = logged_in["@salon_coder:localhost"]
        room = state.topology.agent_rooms[AgentId("coder")]
        hello = event(room, PERSON, "hello", received_by=coder.user_id)
        await FakeSource.sinks[-1].admit(coder.user_id, [hello])
        await eventually(lambda: echoed(coder, "hello") == 1, timeout=10, what="the echo")

        together = [b for b in batches if any("INSERT INTO decisions" in s for s in b)]
        assert len(together) == 1 and "INSERT INTO turns" in together[0][-1]
        assert not [s for s in alone if "INSERT INTO decisions" in s]
        decision = await store.decisions.get(hello.event_id)
        assert decision is not None and decision.agents == ("coder",)
    finally:
        await gateway.stop()


async def test_a_failed_admission_writes_neither_and_the_retry_answers_once(
    tmp_path: Path,
    steps: list[str],  # noqa: F811
    logged_in: dict[str, FakeMatrixAPI],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = Gateway(config(tmp_path, access={"allowed_users": [PERSON]}), name="test")
    state = await gateway.start()
    try:
        assert gateway.running is not None
        store = gateway.running.store
        failed: list[Statements] = []
        batch = store.db.batch

        async def flaky(statements: Statements) -> list[int]:
            if not failed and any("INSERT INTO turns" in sql for sql, _ in statements):
                failed.append(statements)
                raise StoreError("store write failed: database is locked", transient=True)
            return await batch(statements)

        monkeypatch.setattr(store.db, "batch", flaky)
        coder = logged_in["@salon_coder:localhost"]
        room = state.topology.agent_rooms[AgentId("coder")]
        hello = event(room, PERSON, "hello again", received_by=coder.user_id)
        await FakeSource.sinks[-1].admit(coder.user_id, [hello])
        await eventually(lambda: bool(failed), timeout=10, what="the failed admission")
        assert await store.decisions.get(hello.event_id) is None, "nothing half-written"
        await eventually(lambda: echoed(coder, "hello again") == 1, timeout=10, what="retry")

        async def closed() -> bool:  # the reply is out before the turn's close is written
            turn = await store.turns.get(hello.event_id, "coder")
            return turn is not None and turn.state is not TurnState.RUNNING

        await eventually(closed, timeout=10, what="the turn's close")
        turn = await store.turns.get(hello.event_id, "coder")
        assert turn is not None and turn.state is TurnState.REPLIED and turn.attempts == 1
        decision = await store.decisions.get(hello.event_id)
        assert decision is not None and decision.agents == ("coder",)
        row = await store.inbox.get(hello.event_id)
        assert row is not None and row.attempts == 1, "deferred once, then handled"
    finally:
        await gateway.stop()
    assert echoed(coder, "hello again") == 1
