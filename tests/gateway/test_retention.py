"""The retention janitor on both backends (SQLite, a real PostgreSQL): old finished rows
go, table by table; open work of the same age stays; a session's stored history is
bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.gateway.helpers import ALICE, ROUTER, event, make_roster, open_store, sample

from salon.gateway.dispatcher import Dispatcher, DispatchLimits
from salon.gateway.retention import DAY_MS, RetentionJanitor
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationPhase, DelegationRecord
from salon.store.invites import InviteState
from salon.store.records import InboxItem, InboxState, TurnState, now_ms
from salon.store.saved import Decision

ROOM = "!room:localhost"
OLD = 31 * DAY_MS  # past the 30-day cut-off
PRUNED = "salon_retention_pruned_total"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A fresh store, once on SQLite and once on PostgreSQL."""
    store = await Store.open(store_url)
    yield store
    await store.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


async def age(store: Store, table: str, column: str, where: str, *args: object) -> None:
    """Make rows look ``OLD``: their time column moved 31 days back."""
    changed = await store.db.execute(
        f"UPDATE {table} SET {column} = {column} - {OLD} WHERE {where}", *args
    )
    assert changed, f"no {table} row matched {where}"


async def keys(store: Store, sql: str) -> set[str]:
    return {str(r[0]) for r in await store.db.fetchall(sql)}


async def sweep(store: Store, **kwargs: object) -> dict[str, int]:
    return await RetentionJanitor(store, retention_days=30, **kwargs).sweep()  # type: ignore[arg-type]


def _item(event_id: str) -> InboxItem:
    return InboxItem(event_id, ROOM, ALICE, "m.room.message", '{"body": "hi"}', now_ms(), ROUTER)


async def test_inbox_handled_rows_go_pending_ones_stay(store: Store) -> None:
    ids = ["$done", "$dropped", "$pending", "$open_turn", "$recent"]
    await store.inbox.admit([_item(i) for i in ids])
    for event_id in ("$done", "$open_turn", "$recent"):
        await store.inbox.mark(event_id, InboxState.DONE)
    await store.inbox.mark("$dropped", InboxState.DROPPED, "unauthorised")
    await store.turns.admit("$open_turn", "coder", ROOM)  # its turn still owed
    await age(store, "inbox", "received_at", "event_id != '$recent'")
    await age(store, "inbox", "origin_ts", "event_id != '$recent'")
    before = sample(PRUNED, table="inbox")

    assert (await sweep(store))["inbox"] == 2
    assert await keys(store, "SELECT event_id FROM inbox") == {"$pending", "$open_turn", "$recent"}
    assert sample(PRUNED, table="inbox") == before + 2


async def test_an_inbox_row_whose_event_claims_to_be_new_stays(store: Store) -> None:
    """Kept while its own time is inside the window: the dispatcher admits it again
    until then, and only the row keeps it from being answered twice."""
    await store.inbox.admit([_item("$skewed")])
    await store.inbox.mark("$skewed", InboxState.DONE)
    await age(store, "inbox", "received_at", "TRUE")
    assert await sweep(store) == {}
    assert await store.inbox.get("$skewed") is not None


async def test_a_dropped_events_content_is_cleared_at_once(store: Store) -> None:
    await store.inbox.admit([_item("$refused"), _item("$answered")])
    await store.inbox.mark("$refused", InboxState.DROPPED, "unauthorised")
    await store.inbox.mark("$answered", InboxState.DONE, "routed")
    rows = {
        r["event_id"]: dict(r)
        for r in await store.db.fetchall("SELECT event_id, event_json, reason, sender FROM inbox")
    }
    assert rows["$refused"]["event_json"] == ""
    assert rows["$refused"]["reason"] == "unauthorised" and rows["$refused"]["sender"] == ALICE
    assert rows["$answered"]["event_json"] == '{"body": "hi"}'


async def test_closed_turns_go_open_ones_stay(store: Store) -> None:
    for event_id in ("$replied", "$failed", "$stopped", "$admitted", "$running", "$recent"):
        await store.turns.admit(event_id, "coder", ROOM)
    await store.turns.start("$running", "coder")
    await store.turns.finish("$replied", "coder", TurnState.REPLIED)
    await store.turns.finish("$failed", "coder", TurnState.FAILED)
    await store.turns.finish("$stopped", "coder", TurnState.STOPPED)
    await store.turns.finish("$recent", "coder", TurnState.REPLIED)
    await age(store, "turns", "updated_at", "event_id != '$recent'")

    assert (await sweep(store))["turns"] == 3
    assert await keys(store, "SELECT event_id FROM turns") == {"$admitted", "$running", "$recent"}
    assert {t.event_id for t in await store.turns.unfinished()} == {"$admitted", "$running"}


async def test_cron_keeps_each_jobs_latest_run_and_open_runs(store: Store) -> None:
    for ts, turn in ((100, "cron:1"), (200, "cron:2"), (300, "cron:3"), (400, "cron:4")):
        assert await store.cron.claim("coder", "daily", ts, turn)
        await store.turns.admit(turn, "coder", ROOM, kind="cron")
        if turn != "cron:2":  # cron:2's turn is still running (after a crash, say)
            await store.turns.finish(turn, "coder", TurnState.REPLIED)
    await age(store, "cron_runs", "claimed_at", "TRUE")
    await age(store, "turns", "updated_at", "TRUE")

    pruned = await sweep(store)
    assert pruned["cron_runs"] == 2 and pruned["turns"] == 2
    # cron:1 and cron:3 went with their turns; cron:2 runs still; cron:4 is the
    # job's cursor (catch-up counts from it), its turn the state `salon cron` shows.
    assert await keys(store, "SELECT turn_id FROM cron_runs") == {"cron:2", "cron:4"}
    assert await keys(store, "SELECT event_id FROM turns") == {"cron:2", "cron:4"}
    last = await store.cron.last("coder", "daily")
    assert last is not None and last.scheduled_ts == 400 and last.turn_state == "replied"


def _delegation(id: str, direction: str = "out", origin: str = "$origin") -> DelegationRecord:
    return DelegationRecord(
        id=id,
        direction=DelegationDirection(direction),
        from_agent="coder",
        to_agent="writer",
        task="t",
        root=id,
        chain=("coder", "writer"),
        hop=1,
        target_room=ROOM,
        deadline_ts=now_ms() + 60_000,
        origin_event=origin,
    )


async def test_ended_reported_delegations_go_open_or_unreported_stay(store: Store) -> None:
    d = store.delegations
    await d.create(_delegation("done"))
    await d.create(_delegation("unreported"))
    await d.create(_delegation("open"))
    await d.create(_delegation("asked", "in"))
    await d.create(_delegation("asked-running", "in"))
    await d.create(_delegation("origin-open", origin="$still_running"))
    for id in ("done", "unreported", "origin-open"):
        await d.set_state(id, DelegationPhase.COMPLETED, result="r")
    for id in ("asked", "asked-running"):
        await d.set_state(id, DelegationPhase.COMPLETED, result="r", direction="in")
    await d.set_state("open", DelegationPhase.SENT)
    await d.mark_reinjected("done")
    await d.mark_reinjected("origin-open")
    # Open turns that still read a delegation: the delegating turn (its re-run finds
    # the delegation by id), and the asked agent's task.
    await store.turns.admit("$still_running", "coder", ROOM)
    await store.turns.admit("task:asked-running", "writer", ROOM, kind="task")
    await age(store, "delegations", "updated_at", "TRUE")

    assert (await sweep(store))["delegations"] == 2
    left = await keys(store, "SELECT id || ':' || direction FROM delegations")
    assert left == {"unreported:out", "open:out", "asked-running:in", "origin-open:out"}


async def test_decisions_invites_and_session_messages_by_age(store: Store) -> None:
    for event_id in ("$old", "$new"):
        await store.decisions.record(Decision(event_id, ROOM, ("coder",), "mention", "", ALICE))
    await store.invites.record("@salon_coder:localhost", "!joined", ALICE)
    await store.invites.record("@salon_coder:localhost", "!pending", ALICE)
    await store.invites.close("@salon_coder:localhost", "!joined", InviteState.JOINED, "ok")
    await store.sessions.append_turn("s1", "coder", "$t1", [("user", "old", 1)])
    await store.sessions.append_turn("s1", "coder", "$t2", [("user", "new", 1)])
    await age(store, "decisions", "created_at", "event_id = '$old'")
    await age(store, "invites", "updated_at", "TRUE")
    await age(store, "session_messages", "created_at", "turn_id = '$t1'")

    pruned = await sweep(store)
    assert pruned == {"decisions": 1, "invites": 1, "session_messages": 1}
    assert await keys(store, "SELECT event_id FROM decisions") == {"$new"}
    assert await keys(store, "SELECT room_id FROM invites") == {"!pending"}
    assert [m.content for m in await store.sessions.messages("s1", "coder")] == ["new"]


async def test_old_appservice_transaction_ids_go(store: Store) -> None:
    for txn_id in ("old", "new"):
        await store.appservice_txns.record(txn_id)
    await age(store, "appservice_txns", "at", "txn_id = 'old'")

    pruned = await sweep(store)
    assert pruned["appservice_txns"] == 1
    assert await keys(store, "SELECT txn_id FROM appservice_txns") == {"new"}
    assert await store.appservice_txns.seen("new")


async def test_deletes_run_in_batches_until_none_is_left(store: Store) -> None:
    await store.inbox.admit([_item(f"$e{i}") for i in range(7)])
    for i in range(7):
        await store.inbox.mark(f"$e{i}", InboxState.DONE)
    await age(store, "inbox", "received_at", "TRUE")
    await age(store, "inbox", "origin_ts", "TRUE")
    calls: list[int] = []
    prune = store.retention.prune

    async def counted(table: str, cutoff_ms: int, limit: int) -> int:
        count = await prune(table, cutoff_ms, limit)
        if table == "inbox":
            calls.append(count)
        return count

    store.retention.prune = counted  # type: ignore[method-assign]
    assert (await sweep(store, batch=3, pause_s=0))["inbox"] == 7
    assert calls == [3, 3, 1]


async def test_no_retention_keeps_everything(store: Store) -> None:
    await store.inbox.admit([_item("$e")])
    await store.inbox.mark("$e", InboxState.DONE)
    await age(store, "inbox", "received_at", "TRUE")
    await age(store, "inbox", "origin_ts", "TRUE")
    assert await RetentionJanitor(store, retention_days=None).sweep() == {}
    assert await store.inbox.get("$e") is not None


async def test_a_session_keeps_its_newest_messages_whole_turns(store: Store) -> None:
    store.sessions.max_messages = 3
    for n in range(1, 4):
        await store.sessions.append_turn(
            "s", "coder", f"$t{n}", [("user", f"q{n}", 1), ("assistant", f"a{n}", 1)]
        )
    # The newest three are a2 q3 a3: turn 2 would be cut, so it goes whole.
    assert [m.content for m in await store.sessions.messages("s", "coder")] == ["q3", "a3"]
    await store.sessions.append_turn("s", "coder", "$t4", [("user", "q4", 1)])
    assert [m.content for m in await store.sessions.messages("s", "coder")] == ["q3", "a3", "q4"]


async def test_sessions_stored_before_the_bound_are_trimmed_at_start(store: Store) -> None:
    for n in range(5):
        await store.sessions.append_turn("s", "coder", f"$t{n}", [("user", f"q{n}", 1)])
    await store.sessions.append_turn("short", "coder", "$x", [("user", "x", 1)])
    janitor = RetentionJanitor(store, retention_days=None, max_session_messages=2, pause_s=0)
    assert await janitor.trim_sessions() == 3
    assert [m.content for m in await store.sessions.messages("s", "coder")] == ["q3", "q4"]
    assert len(await store.sessions.messages("short", "coder")) == 1


async def test_events_older_than_the_window_are_not_admitted(store: Store) -> None:
    """An event whose inbox row may have been deleted must not be answered again."""
    dispatcher = Dispatcher(
        store,
        roster=make_roster(),
        created_at={ROUTER: 0},
        limits=DispatchLimits(max_age_ms=30 * DAY_MS),
    )

    async def handled(e: object) -> tuple[InboxState, str]:
        return InboxState.DONE, "ok"

    dispatcher.add_event_handler("m.room.message", handled)
    before = sample("salon_events_dropped_total", reason="expired")
    old = event(ROOM, ALICE, event_id="$old", origin_ts=now_ms() - OLD)
    new = event(ROOM, ALICE, event_id="$new")
    await dispatcher.admit(ROUTER, [old, new])
    assert await store.inbox.get("$old") is None
    assert await store.inbox.get("$new") is not None
    assert sample("salon_events_dropped_total", reason="expired") == before + 1


async def test_pruned_space_is_given_back(sqlite_store: Store) -> None:
    """SQLite's file shrinks; PostgreSQL's autovacuum makes the space reusable instead."""
    store = sqlite_store
    for n in range(400):
        await store.sessions.append_turn("s", "coder", f"$t{n}", [("user", "x" * 4000, 1000)])
    await store.reclaim()  # a checkpoint: the WAL's pages are in the file now
    full = await store.size_bytes()
    await age(store, "session_messages", "created_at", "TRUE")
    assert (await sweep(store))["session_messages"] == 400
    assert await store.size_bytes() < full / 4


async def test_old_approvals_go_unless_an_open_turn_may_ask_again(store: Store) -> None:
    from salon.store.approvals import ApprovalRecord, ApprovalState

    await store.turns.admit("$open", "coder", ROOM)
    await store.turns.admit("$closed", "coder", ROOM)
    await store.turns.finish("$closed", "coder", TurnState.REPLIED)
    for aid, turn in (("old-closed", "$closed"), ("old-open", "$open"), ("new", "$closed")):
        await store.approvals.create(
            ApprovalRecord(
                aid,
                turn,
                "coder",
                "delegate",
                {},
                ROOM,
                ALICE,
                ApprovalState.PENDING,
                now_ms(),
                now_ms() + 60_000,
            )
        )
    await age(store, "approvals", "created_at", "id != 'new'")

    assert (await sweep(store))["approvals"] == 1
    assert await keys(store, "SELECT id FROM approvals") == {"old-open", "new"}


async def test_old_tool_steps_go_unless_their_turn_is_open(store: Store) -> None:
    await store.turns.admit("$open", "coder", ROOM)
    await store.turns.admit("$closed", "coder", ROOM)
    await store.turns.finish("$closed", "coder", TurnState.REPLIED)
    for turn in ("$open", "$closed"):
        for step in (0, 1):
            await store.tool_calls.for_turn(turn, "coder").record(step, "n.t", "{}", True, "r")
    await store.tool_calls.for_turn("$closed", "coder").record(2, "n.t", "{}", True, "new")
    await age(store, "tool_calls", "created_at", "step < 2")

    assert (await sweep(store))["tool_calls"] == 2
    left = await keys(store, "SELECT event_id || ':' || step FROM tool_calls")
    assert left == {"$open:0", "$open:1", "$closed:2"}
