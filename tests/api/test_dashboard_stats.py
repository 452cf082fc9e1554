"""The dashboard's figures from ledger rows (pure functions)."""

from __future__ import annotations

from salon.api.dashboard_stats import (
    MINUTE_MS,
    agent_figures,
    graph,
    one_per_id,
    percentile,
    series,
)
from salon.store.delegations import DelegationPhase
from salon.store.records import TurnRecord, TurnState

from .test_admin_delegations import _record

NOW = 1_000 * 3600_000  # a round hour, in ms


def _turn(event: str, state: TurnState, created: int, took: int, agent: str = "a") -> TurnRecord:
    return TurnRecord(
        event_id=event,
        agent_id=agent,
        room_id="!r",
        state=state,
        attempts=1,
        reply_event_id=None,
        error=None,
        updated_at=created + took,
        created_at=created,
    )


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5], 0.95) == 5
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50, 95)


def test_agent_figures_count_the_last_hour_only() -> None:
    turns = [
        _turn("1", TurnState.REPLIED, NOW - 10_000, 1_000),
        _turn("2", TurnState.REPLIED, NOW - 9_000, 3_000),
        _turn("3", TurnState.FAILED, NOW - 5_000, 100),
        _turn("4", TurnState.RUNNING, NOW - 1_000, 0),
        _turn("5", TurnState.ADMITTED, NOW - 500, 0),
        _turn("old", TurnState.REPLIED, NOW - 2 * 3600_000, 50_000),
    ]
    row = agent_figures(turns, NOW)["a"]
    assert row == {
        "in_flight": 1,
        "waiting": 1,
        "replies_1h": 2,
        "errors_1h": 1,
        "p50_ms": 1_000,
        "p95_ms": 3_000,
    }


def test_series_buckets_by_minute_oldest_first() -> None:
    turns = [
        _turn("1", TurnState.REPLIED, NOW + 10_000, 2_000, agent="a"),  # this minute
        _turn("2", TurnState.REPLIED, NOW - 59 * MINUTE_MS, 4_000, agent="b"),  # the first
    ]
    data = series(turns, NOW + 30_000)
    assert data["turns_per_minute"]["*"][-1] == 1 and data["turns_per_minute"]["*"][0] == 1
    assert data["turns_per_minute"]["a"][-1] == 1 and sum(data["turns_per_minute"]["b"]) == 1
    assert data["reply_ms"]["*"][-1] == 2_000 and data["reply_ms"]["*"][1] is None
    assert len(data["reply_ms"]["b"]) == 60


def test_the_graph_weighs_edges_by_count_and_outcome() -> None:
    records = one_per_id(
        [
            _record("d1", "out", DelegationPhase.SENT),
            _record("d1", "in", DelegationPhase.COMPLETED),  # the same one, further along
            _record("d2", "out", DelegationPhase.FAILED),
            _record("d3", "out", DelegationPhase.PROGRESS, to_agent="critic"),
        ]
    )
    drawn = graph(records)
    assert drawn["nodes"] == ["coder", "critic", "writer"]
    edges = {(e["from"], e["to"]): e for e in drawn["edges"]}
    assert edges["coder", "writer"]["count"] == 2
    assert edges["coder", "writer"]["outcomes"] == {"completed": 1, "failed": 1}
    assert edges["coder", "critic"]["outcomes"] == {"open": 1}
