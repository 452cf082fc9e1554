"""The dashboard's figures from ledger rows: per-agent counts and reply times, the
per-minute series of the last hour, and the who-delegates-to-whom graph.

Pure functions over store records, so they are tested without a gateway. A turn's
reply time is from its admission to its outcome (``updated_at - created_at``): what
the person waited, queueing included.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from salon.store.delegations import TERMINAL_PHASES, DelegationPhase, DelegationRecord
from salon.store.records import TurnRecord, TurnState

JSON = dict[str, Any]
HOUR_MS = 3600_000
MINUTE_MS = 60_000
MINUTES = 60
_PHASE_ORDER = list(DelegationPhase)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered) - 1e-9)  # the smallest value with q of them at or below
    return ordered[max(0, min(len(ordered), rank) - 1)]


def reply_ms(turn: TurnRecord) -> int | None:
    """How long a closed turn took from admission to outcome (None while open)."""
    if turn.open or not turn.created_at:
        return None
    return max(0, turn.updated_at - turn.created_at)


def agent_figures(turns: Iterable[TurnRecord], now_ms: int) -> dict[str, JSON]:
    """Per agent: turns in flight and waiting, replies, errors, p50/p95 reply time
    over the last hour."""
    since = now_ms - HOUR_MS
    times: dict[str, list[float]] = {}
    figures: dict[str, JSON] = {}
    for turn in turns:
        row = figures.setdefault(
            turn.agent_id,
            {"in_flight": 0, "waiting": 0, "replies_1h": 0, "errors_1h": 0},
        )
        if turn.state == TurnState.RUNNING:
            row["in_flight"] += 1
        elif turn.state == TurnState.ADMITTED:
            row["waiting"] += 1
        elif turn.updated_at >= since:
            if turn.state == TurnState.REPLIED:
                row["replies_1h"] += 1
                took = reply_ms(turn)
                if took is not None:
                    times.setdefault(turn.agent_id, []).append(took)
            elif turn.state == TurnState.FAILED:
                row["errors_1h"] += 1
    for agent_id, row in figures.items():
        row["p50_ms"] = percentile(times.get(agent_id, []), 0.5)
        row["p95_ms"] = percentile(times.get(agent_id, []), 0.95)
    return figures


def series(turns: Iterable[TurnRecord], now_ms: int) -> JSON:
    """Turns per minute (by admission) and median reply time per minute (by outcome)
    over the last hour, overall (``"*"``) and per agent; the oldest minute first."""
    start = (now_ms // MINUTE_MS - MINUTES + 1) * MINUTE_MS
    counts: dict[str, list[int]] = {"*": [0] * MINUTES}
    times: dict[str, list[list[float]]] = {"*": [[] for _ in range(MINUTES)]}
    for turn in turns:
        for key in ("*", turn.agent_id):
            counts.setdefault(key, [0] * MINUTES)
            times.setdefault(key, [[] for _ in range(MINUTES)])
        if turn.created_at >= start:
            slot = min(MINUTES - 1, (turn.created_at - start) // MINUTE_MS)
            counts["*"][slot] += 1
            counts[turn.agent_id][slot] += 1
        took = reply_ms(turn) if turn.state == TurnState.REPLIED else None
        if took is not None and turn.updated_at >= start:
            slot = min(MINUTES - 1, (turn.updated_at - start) // MINUTE_MS)
            times["*"][slot].append(took)
            times[turn.agent_id][slot].append(took)
    return {
        "start_ms": start,
        "minute_ms": MINUTE_MS,
        "turns_per_minute": counts,
        "reply_ms": {
            key: [percentile(slot, 0.5) for slot in slots] for key, slots in times.items()
        },
    }


def one_per_id(records: Iterable[DelegationRecord]) -> list[DelegationRecord]:
    """One row per delegation id (both agents here: a row each way), the one furthest
    along; newest first."""
    by_id: dict[str, DelegationRecord] = {}
    for record in records:
        known = by_id.get(record.id)
        if known is None or _PHASE_ORDER.index(record.state) > _PHASE_ORDER.index(known.state):
            by_id[record.id] = record
    return sorted(by_id.values(), key=lambda r: (r.created_at, r.id), reverse=True)


def delegation_view(record: DelegationRecord) -> JSON:
    """One delegation as the dashboard lists it."""
    return {
        "id": record.id,
        "from": record.from_agent,
        "to": record.to_agent,
        "state": record.state.value,
        "open": record.state not in TERMINAL_PHASES,
        "task": record.task[:300],
        "error": record.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def graph(records: Iterable[DelegationRecord]) -> JSON:
    """Who delegates to whom: nodes, and edges with their count by outcome."""
    edges: dict[tuple[str, str], JSON] = {}
    nodes: list[str] = []
    for record in records:
        for name in (record.from_agent, record.to_agent):
            if name not in nodes:
                nodes.append(name)
        edge = edges.setdefault(
            (record.from_agent, record.to_agent),
            {"from": record.from_agent, "to": record.to_agent, "count": 0, "outcomes": {}},
        )
        edge["count"] += 1
        outcome = record.state.value if record.state in TERMINAL_PHASES else "open"
        edge["outcomes"][outcome] = edge["outcomes"].get(outcome, 0) + 1
    return {"nodes": sorted(nodes), "edges": list(edges.values())}
