"""Approvals on the fake homeserver and a real store (both backends): the request, the
decision rules (who may, once only), the timeout, reuse after a re-run, lent slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError
from tests.fake_matrix import FakeHomeserver, FakeMatrixAPI
from tests.gateway.helpers import ALICE, BOB, CODER, CODER_USER, event, make_config, sample

from salon.agents.approval import (
    Approved,
    ApprovingDelegator,
    Denied,
    ToolCall,
    approve,
    approver_context,
    needs_approval,
)
from salon.agents.context import lending_context
from salon.agents.tools import DelegationOutcome
from salon.gateway.approvals import ApprovalDesk, reaction_verdict, shorten
from salon.ids import AgentId, RoomId
from salon.store import Store
from salon.store.approvals import ApprovalState
from salon.store.records import TurnState
from salon.turns.slots import SlotLimits, TurnSlots
from salon.turns.spec import TurnKind, TurnSpec

CALL = ToolCall("delegate", {"agent": "writer", "task": "write it"})


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    yield opened
    await opened.close()


class Setup:
    def __init__(self, store: Store, **approval: Any) -> None:
        self.hs = FakeHomeserver()
        self.api: FakeMatrixAPI = self.hs.api(CODER_USER)
        self.config = make_config(
            approval={"default": ["delegate"], **approval}, access={"admins": [str(BOB)]}
        )
        self.desk = ApprovalDesk(
            store,
            {CODER: self.api},  # type: ignore[dict-item]
            lambda: self.config,
            self.config.access.is_admin,
        )
        self.store = store

    async def spec(self, turn_id: str = "$turn") -> TurnSpec:
        room = await self.api.create_room()
        await self.store.turns.admit(turn_id, CODER, room)  # the turn that waits
        return TurnSpec(
            turn_id=turn_id,
            agent_id=CODER,
            kind=TurnKind.MESSAGE,
            room_id=RoomId(room),
            sender=str(ALICE),
            for_user=str(ALICE),
            text="hi",
            session_key="s",
        )

    async def pending(self) -> Any:
        for _ in range(500):
            rows = await self.store.approvals.list(state=ApprovalState.PENDING)
            if rows and rows[0].request_event_id:
                return rows[0]
            await asyncio.sleep(0.01)
        raise AssertionError("no pending approval")


def test_patterns_and_reaction_keys() -> None:
    assert needs_approval(["delegate"], "delegate")
    assert needs_approval(["github.*"], "github.create_issue")
    assert not needs_approval(["github.*"], "gitlab.create_issue")
    assert not needs_approval(["github.create_issue"], "github.delete_repo")
    assert needs_approval(["*"], "anything.at_all")
    assert not needs_approval([], "delegate")
    for key in ("✅", "✅\ufe0f", "✔️", "✔", "☑️", "👍", "👍🏽"):
        assert reaction_verdict(key) is True, key
    for key in ("❌", "✖️", "👎", "👎🏿", "🚫"):
        assert reaction_verdict(key) is False, key
    for key in ("🛑", "ok", "", None, 3):
        assert reaction_verdict(key) is None
    shown = shorten({"task": "x" * 500, "n": 3})
    assert len(shown) <= 300 and shown.endswith("n=3") and "…" in shown


def test_config_patterns_are_checked_and_an_agent_list_overrides_the_default() -> None:
    config = make_config(
        approval={"default": ["github.*"], "timeout_s": 30},
        agents={
            "coder": {"backend": "echo", "approve": ["delegate", "fs.write"]},
            "writer": {"backend": "echo"},
        },
    )
    assert config.approval_patterns("coder") == ["delegate", "fs.write"]
    assert config.approval_patterns("writer") == ["github.*"]
    with pytest.raises(ValidationError, match="expected delegate"):
        make_config(approval={"default": ["git hub"]})


async def test_no_approver_approves_and_a_denial_never_delegates() -> None:
    assert await approve(CALL) == Approved()

    class Inner:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def targets(self) -> list[tuple[str, str]]:
            return [("writer", "")]

        async def delegate(
            self, agent: str, task: str, context: str | None = None
        ) -> DelegationOutcome:
            self.asked.append(task)
            return DelegationOutcome(True, "done")

    class No:
        async def approve(self, call: ToolCall) -> Denied:
            return Denied("denied by @bob:localhost")

    inner = Inner()
    with approver_context(No()):
        outcome = await ApprovingDelegator(inner).delegate("writer", "write it")
    assert outcome == DelegationOutcome(
        False, "[DENIED] delegate was not run: denied by @bob:localhost"
    )
    assert inner.asked == []


async def test_only_the_requester_or_an_admin_decides_and_only_once(store: Store) -> None:
    s = Setup(store)
    spec = await s.spec()
    approver = s.desk.approver_for(spec)
    assert approver is not None
    waiting = asyncio.create_task(approver.approve(CALL))
    record = await s.pending()
    assert record.for_user == ALICE and record.arguments == dict(CALL.arguments)
    ignored = sample("salon_approvals_total", outcome="ignored")

    code, row = await s.desk.decide(
        record.request_event_id,
        approve=True,
        by="@mallory:localhost",
        via="reaction",
        by_event=True,
    )
    assert code == "not_allowed" and row is not None and row.pending
    assert row.ignored[0]["by"] == "@mallory:localhost"
    assert "not the person the turn works for" in row.ignored[0]["why"]
    assert sample("salon_approvals_total", outcome="ignored") == ignored + 1
    assert not waiting.done()

    code, row = await s.desk.decide(record.id, approve=False, by=str(BOB), via="command")
    assert code == "denied"
    assert await asyncio.wait_for(waiting, 5) == Denied(f"denied by {BOB}")
    code, row = await s.desk.decide(record.id, approve=True, by=str(ALICE), via="command")
    assert code == "decided" and row is not None and row.state is ApprovalState.DENIED
    edits = [m for m in s.hs.messages_in(spec.room_id) if "m.new_content" in m["content"]]
    assert "Refused by @bob:localhost" in edits[-1]["content"]["m.new_content"]["body"]


async def test_the_timeout_refuses_and_a_rerun_reuses_the_decision(store: Store) -> None:
    s = Setup(store, timeout_s=0.3)
    spec = await s.spec()
    before = sample("salon_approvals_total", outcome="timeout")
    approver = s.desk.approver_for(spec)
    assert approver is not None
    decision = await asyncio.wait_for(approver.approve(CALL), 5)
    assert isinstance(decision, Denied) and "nobody approved it within" in decision.reason
    assert sample("salon_approvals_total", outcome="timeout") == before + 1
    [row] = await store.approvals.list()
    assert row.state is ApprovalState.TIMEOUT

    # The turn runs again (a crash): the same call gets the same row and its decision,
    # without a second request in the room.
    requests = len(s.hs.messages_in(spec.room_id))
    again = s.desk.approver_for(spec)
    assert again is not None
    assert await asyncio.wait_for(again.approve(CALL), 5) == decision
    assert len(s.hs.messages_in(spec.room_id)) == requests
    assert len(await store.approvals.list()) == 1


async def test_a_reaction_approves_and_the_wait_lends_the_turns_slots(store: Store) -> None:
    s = Setup(store)
    spec = await s.spec()
    slots = TurnSlots(SlotLimits(total=1, per_agent=1, per_sender=1))
    approver = s.desk.approver_for(spec)
    assert approver is not None

    async def turn() -> Any:
        async with slots.hold(CODER, str(ALICE)) as lease:
            with lending_context(lease.lend), approver_context(approver):
                return await approve(CALL)

    waiting = asyncio.create_task(turn())
    record = await s.pending()
    # While it waits for a person, another turn of the same agent and sender runs.
    async with asyncio.timeout(5), slots.hold(CODER, str(ALICE)):
        pass
    reaction = event(
        spec.room_id,
        str(ALICE),
        event_type="m.reaction",
        content={
            "m.relates_to": {
                "rel_type": "m.annotation",
                "event_id": record.request_event_id,
                "key": "👍",
            }
        },
    )
    assert await s.desk.on_reaction(reaction) == "approved"
    assert await asyncio.wait_for(waiting, 5) == Approved(str(ALICE))


async def test_a_turn_without_a_room_is_refused_and_an_agent_without_patterns_asks_nobody(
    store: Store,
) -> None:
    s = Setup(store)
    spec = await s.spec()
    approver = s.desk.approver_for(TurnSpec(**{**spec.__dict__, "room_id": RoomId("")}))
    assert approver is not None
    decision = await approver.approve(CALL)
    assert isinstance(decision, Denied) and "no room" in decision.reason
    s.config = make_config(
        approval={"default": ["delegate"]},
        agents={"coder": {"backend": "echo", "approve": []}, "writer": {"backend": "echo"}},
    )
    assert s.desk.approver_for(spec) is None  # its own empty list overrides the default
    writer = TurnSpec(**{**spec.__dict__, "agent_id": AgentId("writer")})
    assert s.desk.approver_for(writer) is not None


async def test_an_answer_after_the_turn_ended_runs_nothing(store: Store) -> None:
    s = Setup(store)
    spec = await s.spec()
    approver = s.desk.approver_for(spec)
    assert approver is not None
    waiting = asyncio.create_task(approver.approve(CALL))
    record = await s.pending()
    waiting.cancel()  # the turn was stopped while it waited
    await store.turns.finish(spec.turn_id, CODER, TurnState.STOPPED)
    code, row = await s.desk.decide(record.id, approve=True, by=str(ALICE), via="reaction")
    assert code == "decided" and row is not None and row.state is ApprovalState.TIMEOUT
    assert row.reason == "the turn ended before anyone answered"


async def test_a_request_the_room_refuses_is_a_refusal_not_a_crash(store: Store) -> None:
    s = Setup(store)
    spec = await s.spec()
    await s.api.leave(spec.room_id)  # the agent is no longer in the room
    approver = s.desk.approver_for(spec)
    assert approver is not None
    decision = await asyncio.wait_for(approver.approve(CALL), 5)
    assert isinstance(decision, Denied) and "could not be posted" in decision.reason
    [row] = await store.approvals.list()
    assert row.state is ApprovalState.TIMEOUT and row.request_event_id is None
