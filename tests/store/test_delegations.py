"""The delegations table on both backends (a SQLite file, a real PostgreSQL):
forward-only states, one re-injection."""

from __future__ import annotations

import asyncio
import dataclasses

from salon.coordination.protocol import DelegationState, new_request
from salon.coordination.records import record_of, request_of
from salon.store import Store
from salon.store.delegations import (
    DelegationDirection,
    DelegationPhase,
    DelegationRecord,
)

NOW = 1_700_000_000_000


def _record(id: str = "dlg_1", **overrides: object) -> DelegationRecord:
    record = DelegationRecord(
        id=id,
        direction=DelegationDirection.OUT,
        from_agent="coder",
        to_agent="researcher",
        task="find the paper",
        root=id,
        chain=("coder", "researcher"),
        hop=1,
        target_room="!researcher:x",
        deadline_ts=NOW + 60_000,
        origin_room="!chat:x",
        origin_event="$origin",
    )
    return dataclasses.replace(record, **overrides)  # type: ignore[arg-type]


async def _open(store_url: str) -> Store:
    return await Store.open(store_url)


async def test_the_person_it_is_for_is_kept_for_a_resend(store_url: str) -> None:
    store = await _open(store_url)
    request = new_request(
        "coder", "researcher", "find it", deadline_ts=NOW, for_user="@alice:example.org"
    )
    await store.delegations.create(record_of(request, DelegationDirection.OUT, "!researcher:x"))
    await store.delegations.create(_record("dlg_2"))
    got = await store.delegations.get(request.id)
    assert got is not None and got.for_user == "@alice:example.org"
    assert request_of(got) == request  # a request re-sent after a crash says the same
    none = await store.delegations.get("dlg_2")
    assert none is not None and none.for_user is None and request_of(none).for_user is None
    await store.close()


async def test_create_and_get(store_url: str) -> None:
    store = await _open(store_url)
    assert await store.delegations.get("dlg_1") is None
    assert await store.delegations.create(_record(context="background", parent=None))
    got = await store.delegations.get("dlg_1")
    assert got is not None
    assert got.chain == ("coder", "researcher")
    assert (got.state, got.direction, got.reinjected, got.terminal) == (
        DelegationPhase.PENDING,
        DelegationDirection.OUT,
        False,
        False,
    )
    assert (got.context, got.origin_room, got.origin_event) == ("background", "!chat:x", "$origin")
    assert got.created_at > 0 and got.updated_at >= got.created_at
    # A replayed create changes nothing.
    assert not await store.delegations.create(_record(task="other"))
    again = await store.delegations.get("dlg_1")
    assert again is not None and again.task == "find the paper"
    await store.close()


async def test_same_id_both_directions(store_url: str) -> None:
    """Both agents in one gateway: the outbound and the inbound row coexist."""
    store = await _open(store_url)
    assert await store.delegations.create(_record())
    inbound = _record(direction=DelegationDirection.IN, state=DelegationPhase.ACCEPTED)
    assert await store.delegations.create(inbound)
    assert await store.delegations.set_state("dlg_1", "completed", result="r", direction="in")
    out = await store.delegations.get("dlg_1")
    in_ = await store.delegations.get("dlg_1", DelegationDirection.IN)
    assert out is not None and in_ is not None
    assert (out.state, in_.state) == (DelegationPhase.PENDING, DelegationPhase.COMPLETED)
    assert [d.direction for d in await store.delegations.open()] == [DelegationDirection.OUT]
    assert await store.delegations.open("in") == []
    await store.close()


async def test_request_event_marks_sent(store_url: str) -> None:
    store = await _open(store_url)
    await store.delegations.create(_record())
    await store.delegations.set_request_event("dlg_1", "$req")
    got = await store.delegations.get("dlg_1")
    assert got is not None and (got.request_event_id, got.state) == ("$req", DelegationPhase.SENT)
    await store.close()


async def test_states_only_move_forward(store_url: str) -> None:
    store = await _open(store_url)
    d = store.delegations
    await d.create(_record())
    assert await d.set_state("dlg_1", DelegationPhase.SENT)
    assert await d.set_state("dlg_1", DelegationState.ACCEPTED)  # the protocol enum works too
    assert await d.set_state("dlg_1", "progress")
    assert not await d.set_state("dlg_1", "progress")  # no change
    assert not await d.set_state("dlg_1", "accepted")  # backwards
    got = await d.get("dlg_1")
    assert got is not None and got.state == DelegationPhase.PROGRESS
    assert await d.set_state("dlg_1", "completed", result="the answer")
    assert not await d.set_state("dlg_1", "failed", error="too late")
    got = await d.get("dlg_1")
    assert got is not None
    assert (got.state, got.result, got.error, got.terminal) == (
        DelegationPhase.COMPLETED,
        "the answer",
        None,
        True,
    )
    await store.close()


async def test_status_may_skip_states(store_url: str) -> None:
    store = await _open(store_url)
    await store.delegations.create(_record())
    # A completion seen before we recorded the send (crash between send and write).
    assert await store.delegations.set_state("dlg_1", "completed", result="r")
    await store.delegations.set_request_event("dlg_1", "$req")
    got = await store.delegations.get("dlg_1")
    assert got is not None and (got.state, got.request_event_id) == ("completed", "$req")
    await store.close()


async def test_late_completion_after_timeout_is_recorded_but_state_stays(store_url: str) -> None:
    store = await _open(store_url)
    d = store.delegations
    await d.create(_record(state=DelegationPhase.SENT))
    assert await d.set_state("dlg_1", "timeout", error="no answer within 60 s")
    assert not await d.set_state("dlg_1", "completed", result="late answer")
    got = await d.get("dlg_1")
    assert got is not None
    assert (got.state, got.result, got.error) == (
        DelegationPhase.TIMEOUT,
        "late answer",
        "no answer within 60 s",
    )
    # A second late result does not overwrite the first.
    assert not await d.set_state("dlg_1", "completed", result="even later")
    got = await d.get("dlg_1")
    assert got is not None and got.result == "late answer"
    await store.close()


async def test_mark_reinjected_once(store_url: str) -> None:
    store = await _open(store_url)
    await store.delegations.create(_record())
    assert await store.delegations.mark_reinjected("dlg_1")
    assert not await store.delegations.mark_reinjected("dlg_1")
    got = await store.delegations.get("dlg_1")
    assert got is not None and got.reinjected
    assert not await store.delegations.mark_reinjected("dlg_unknown")
    await store.close()


async def test_mark_reinjected_once_under_concurrency(store_url: str) -> None:
    store = await _open(store_url)
    await store.delegations.create(_record())
    results = await asyncio.gather(*(store.delegations.mark_reinjected("dlg_1") for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    await store.close()


async def test_mark_reinjected_once_across_two_connections(store_url: str) -> None:
    """Two gateway processes on one store file: still one winner."""
    a = await _open(store_url)
    b = await _open(store_url)
    await a.delegations.create(_record())
    results = await asyncio.gather(
        *(s.delegations.mark_reinjected("dlg_1") for s in (a, b, a, b, a, b))
    )
    assert results.count(True) == 1
    await a.close()
    await b.close()


async def test_open_and_expired(store_url: str) -> None:
    store = await _open(store_url)
    d = store.delegations
    await d.create(_record("d_soon", deadline_ts=NOW + 1_000, state=DelegationPhase.SENT))
    await d.create(_record("d_later", deadline_ts=NOW + 9_000))
    await d.create(_record("d_done", deadline_ts=NOW - 5_000))
    await d.set_state("d_done", "failed", error="boom")
    await d.create(
        _record(
            "d_in",
            deadline_ts=NOW - 1,
            direction=DelegationDirection.IN,
            state=DelegationPhase.ACCEPTED,
        )
    )
    assert {r.id for r in await d.open()} == {"d_soon", "d_later", "d_in"}
    assert {r.id for r in await d.open("out")} == {"d_soon", "d_later"}
    assert [r.id for r in await d.open(DelegationDirection.IN)] == ["d_in"]
    assert [r.id for r in await d.expired(NOW)] == ["d_in"]
    assert [r.id for r in await d.expired(NOW + 1_000)] == ["d_in", "d_soon"]
    assert [r.id for r in await d.expired(NOW + 10_000, "out")] == ["d_soon", "d_later"]
    await d.set_state("d_soon", "timeout", error="deadline")
    assert [r.id for r in await d.expired(NOW + 10_000, "out")] == ["d_later"]
    assert len(await d.recent()) == 4
    assert len(await d.recent(limit=2)) == 2
    await store.close()


async def test_delegations_survive_reopen(store_url: str) -> None:
    store = await _open(store_url)
    chain = ("coder", "researcher", "writer")
    await store.delegations.create(
        _record("d2", parent="d1", root="d1", chain=chain, hop=2, from_agent="researcher")
    )
    await store.delegations.set_request_event("d2", "$req")
    await store.delegations.set_state("d2", "accepted")
    await store.close()

    store = await _open(store_url)
    [got] = await store.delegations.open("out")
    assert (got.id, got.parent, got.root, got.chain, got.hop, got.state) == (
        "d2",
        "d1",
        "d1",
        chain,
        2,
        DelegationPhase.ACCEPTED,
    )
    assert got.request_event_id == "$req" and not got.reinjected
    assert await store.delegations.set_state("d2", "completed", result="done")
    assert await store.delegations.mark_reinjected("d2")
    await store.close()

    store = await _open(store_url)
    got2 = await store.delegations.get("d2")
    assert got2 is not None and got2.reinjected and got2.result == "done"
    assert not await store.delegations.mark_reinjected("d2")
    await store.close()


async def test_last_activity_counts_turns_and_delegations_sent_into_a_room(
    store_url: str,
) -> None:
    store = await _open(store_url)
    assert await store.turns.last_activity("coder", "!researcher:x") is None
    await store.delegations.create(_record())
    sent = await store.delegations.get("dlg_1")
    assert sent is not None
    # An inbound copy (the researcher's side) is not the coder visiting.
    await store.delegations.create(_record(direction=DelegationDirection.IN, from_agent="x"))
    assert await store.turns.last_activity("coder", "!researcher:x") == sent.updated_at
    assert await store.turns.last_activity("researcher", "!researcher:x") is None
    await asyncio.sleep(0.01)
    await store.turns.admit("$later", "coder", "!researcher:x")
    later = await store.turns.get("$later", "coder")
    assert later is not None and later.updated_at > sent.updated_at
    assert await store.turns.last_activity("coder", "!researcher:x") == later.updated_at
    await store.close()
