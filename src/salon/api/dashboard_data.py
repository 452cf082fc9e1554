"""What the dashboard shows, read now: one JSON snapshot of agents, turns,
delegations, charts and operations (``GET /api/v1/dashboard/snapshot``, and each
``snapshot`` event of the stream).

Another panel is one entry in :data:`SECTIONS`: an async function of the context
returning its JSON, or None when it has nothing to show (the page then hides the
panel). The approvals panel plugs in this way once the API has approvals.

A :class:`Snapshots` is shared by every open page: it builds at most one snapshot a
second, however many streams ask, and remembers the agents it has seen, so an agent
removed by a reload stays listed, offline, instead of vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from salon import __version__
from salon.api.admin_agents import agent_view
from salon.api.context import ApiContext
from salon.api.dashboard_stats import (
    HOUR_MS,
    agent_figures,
    delegation_view,
    graph,
    one_per_id,
    reply_ms,
    series,
)
from salon.api.health import loop_view
from salon.store.delegations import TERMINAL_PHASES
from salon.store.records import TurnRecord, now_ms

JSON = dict[str, Any]
Section = Callable[[ApiContext], Awaitable[Any]]
RELOAD_STATUS_KEY = "gateway:reload"  # salon.gateway.reload writes it
TURNS_LISTED = 200
TURNS_READ = 2000
DELEGATIONS_READ = 200
MIN_AGE_S = 1.0
HEARTBEAT_AGE_S = 5.0  # how stale a heartbeat read may be (a beat's TTL is longer)
APPROVALS_SHOWN = 50
TEXT_SHOWN = 200  # characters of a turn's message shown


def matrix_to(room: str | None) -> str | None:
    """The ``matrix.to`` link of a room alias or id."""
    return f"https://matrix.to/#/{room}" if room else None


async def _agent_config(ctx: ApiContext) -> dict[str, JSON]:
    return dict(await ctx.agent_info()) if ctx.agent_info is not None else {}


class Heartbeats:
    """Each agent's heartbeat view (a state event read from its room), read again
    every few seconds or when the roster changes: a beat is sent far less often
    than the page is refreshed, and 20 agents would be 20 requests a second."""

    def __init__(self, max_age_s: float = HEARTBEAT_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._views: list[JSON] = []
        self._at = 0.0
        self._ids: list[str] = []

    async def views(self, ctx: ApiContext) -> list[JSON]:
        members = list(ctx.roster)
        ids = [str(m.agent_id) for m in members]
        if ids != self._ids or time.monotonic() - self._at >= self.max_age_s:
            self._views = list(await asyncio.gather(*(agent_view(ctx, m) for m in members)))
            self._at, self._ids = time.monotonic(), ids
        return [dict(view) for view in self._views]


async def agents_section(
    ctx: ApiContext, turns: list[TurnRecord], now: int, beats: Heartbeats
) -> list[JSON]:
    """Each agent in the roster: heartbeat, room, backend, turns and reply times."""
    views = await beats.views(ctx)
    figures = agent_figures(turns, now)
    configs = await _agent_config(ctx)
    rows = []
    for view in views:
        view["room_link"] = matrix_to(view["room_alias"] or view["room_id"])
        view.update(configs.get(view["id"], {}))
        view.update(
            figures.get(
                view["id"],
                {"in_flight": 0, "waiting": 0, "replies_1h": 0, "errors_1h": 0}
                | {"p50_ms": None, "p95_ms": None},
            )
        )
        rows.append(view)
    return rows


def _said(turn: TurnRecord) -> tuple[str | None, str | None]:
    """Who started the turn and the start of what they said (from its stored spec)."""
    try:
        spec = json.loads(turn.spec) if turn.spec else {}
    except ValueError:
        return None, None
    if not isinstance(spec, dict):
        return None, None
    text = spec.get("text")
    sender = spec.get("sender")
    return (
        sender if isinstance(sender, str) else None,
        text[:TEXT_SHOWN] if isinstance(text, str) else None,
    )


def turn_view(turn: TurnRecord, room_names: dict[str, str]) -> JSON:
    """One turn as the dashboard lists it."""
    sender, text = _said(turn)
    return {
        "sender": sender,
        "text": text,
        "event_id": turn.event_id,
        "agent": turn.agent_id,
        "room_id": turn.room_id,
        "room": room_names.get(turn.room_id, turn.room_id),
        "kind": turn.kind,
        "state": turn.state.value,
        "attempts": turn.attempts,
        "created_at": turn.created_at,
        "updated_at": turn.updated_at,
        "duration_ms": reply_ms(turn),
        "error": turn.error,
    }


async def operations_section(ctx: ApiContext) -> JSON:
    """Loops and restarts, the last reload, store size, version."""
    reload: Any = None
    with contextlib.suppress(Exception):  # a store problem shows as "unknown"
        raw = await ctx.store.kv.get(RELOAD_STATUS_KEY)
        reload = json.loads(raw) if raw else None
    size: int | None = None
    with contextlib.suppress(Exception):
        size = await ctx.store.size_bytes()
    return {
        "gateway": ctx.gateway,
        "version": __version__,
        "loops": [loop_view(loop) for loop in ctx.loops()],
        "reload": reload,
        "can_reload": ctx.reload is not None,
        "store_size_bytes": size,
    }


async def approvals_section(ctx: ApiContext) -> JSON | None:
    """Tool calls waiting for a person's OK, and the latest decided; None while the
    gateway has no approvals (the page then hides the panel)."""
    if ctx.approvals is None:
        return None
    from salon.store.approvals import ApprovalState

    pending = await ctx.store.approvals.list(state=ApprovalState.PENDING, limit=APPROVALS_SHOWN)
    latest = await ctx.store.approvals.list(limit=APPROVALS_SHOWN)
    return {
        "pending": [r.to_json() for r in pending],
        "recent": [r.to_json() for r in latest if not r.pending][:20],
    }


# Extra panels: name → async function of the context (None: nothing to show).
SECTIONS: dict[str, Section] = {"approvals": approvals_section}


async def snapshot(ctx: ApiContext, beats: Heartbeats | None = None) -> JSON:
    """Everything the page shows, read now (heartbeats from ``beats``, if given)."""
    now = now_ms()
    turns = await ctx.store.turns.recent(now - HOUR_MS, TURNS_READ)
    room_names = {room: agent for agent, room in ctx.agent_rooms.items()}
    room_names[ctx.lobby_id] = "lobby"
    delegations = one_per_id(await ctx.store.delegations.recent(DELEGATIONS_READ))
    body: JSON = {
        "now_ms": now,
        "agents": await agents_section(ctx, turns, now, beats or Heartbeats(0)),
        "turns": [turn_view(t, room_names) for t in turns[:TURNS_LISTED]],
        "delegations": {
            "open": [delegation_view(d) for d in delegations if d.state not in TERMINAL_PHASES],
            "recent": [delegation_view(d) for d in delegations[:50]],
            "graph": graph(delegations),
        },
        "charts": series(turns, now),
        "operations": await operations_section(ctx),
    }
    for name, section in SECTIONS.items():
        value = await section(ctx)
        if value is not None:
            body[name] = value
    return body


class Snapshots:
    """The latest snapshot, shared by every page, built at most once a second."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._lock = asyncio.Lock()
        self._built: float = 0.0
        self._latest: JSON | None = None
        self._seen: dict[str, JSON] = {}
        self._beats = Heartbeats()

    async def get(self) -> JSON:
        """A snapshot no older than a second."""
        async with self._lock:
            if self._latest is None or time.monotonic() - self._built >= MIN_AGE_S:
                self._latest = self._with_removed(await snapshot(self.ctx, self._beats))
                self._built = time.monotonic()
            return self._latest

    def _with_removed(self, body: JSON) -> JSON:
        listed = {a["id"] for a in body["agents"]}
        for agent in body["agents"]:
            self._seen[agent["id"]] = agent
        for agent_id, last in self._seen.items():
            if agent_id not in listed:
                gone = {**last, "status": "offline", "removed": True}
                gone.update(in_flight=0, waiting=0)
                body["agents"].append(gone)
        return body
