"""`!approve` / `!deny`: by id or as a reply to the request; who may; once only."""

from __future__ import annotations

from tests.commands.harness import ALICE, BOB, Harness
from tests.gateway.helpers import make_config

from salon.gateway.approvals import ApprovalDesk
from salon.store.approvals import ApprovalRecord, ApprovalState
from salon.store.records import now_ms


async def test_approve_and_deny_by_id_or_reply(h: Harness) -> None:
    config = make_config(access={"admins": [str(BOB)]})
    h.handlers.approvals = ApprovalDesk(h.store, {}, lambda: config, config.access.is_admin)
    room = await h.shared_room()
    for aid in ("a1", "a2", "a3"):
        await h.store.approvals.create(
            ApprovalRecord(
                id=aid,
                turn_id="$t",
                agent_id="coder",
                tool="delegate",
                arguments={"agent": "writer"},
                room_id=room,
                for_user=ALICE,
                state=ApprovalState.PENDING,
                created_at=now_ms(),
                deadline_at=now_ms() + 60_000,
            )
        )
    await h.store.approvals.set_request("a2", "$request")
    await h.store.turns.admit("$t", "coder", room)  # the turn that waits for them

    assert await h.ask(room, "!approve") == [
        "Reply to an approval request with !approve or !deny, or give its id."
    ]
    assert await h.ask(room, "!approve a1", sender="@carol:localhost") == [
        "Only the person the agent works for here, or an admin, may answer this request."
    ]
    assert await h.ask(room, "!approve a1") == ["✅ Approved: delegate runs now."]
    assert await h.ask(room, "!deny a1") == ["That request was already answered (approved)."]
    assert await h.ask(room, "!deny", reply_to="$request", sender=BOB) == [
        "❌ Refused: delegate will not run."
    ]
    assert await h.ask(room, "!deny nope") == ["There is no approval request nope."]
    a1, a2, a3 = [await h.store.approvals.get(a) for a in ("a1", "a2", "a3")]
    assert a1 is not None and a1.state is ApprovalState.APPROVED and a1.decided_by == ALICE
    assert a1.ignored[0]["by"] == "@carol:localhost"
    assert a2 is not None and a2.state is ApprovalState.DENIED and a2.decided_by == BOB
    assert a3 is not None and a3.pending
