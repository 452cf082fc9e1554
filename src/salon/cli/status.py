"""`salon status`: what a gateway is doing, read from its store (read-only)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salon._exceptions import ConfigError, StoreError
from salon.coordination.refs import labels_of
from salon.procs import pid_alive
from salon.store.db import sqlite_size_bytes
from salon.store.delegations import TERMINAL_PHASES, DelegationPhase
from salon.store.kv import GATEWAY_STATUS_KEY as STATUS_KEY

RELOAD_STATUS_KEY = "gateway:reload"  # salon.gateway.reload writes it

# A running gateway refreshes its status row every 5 s; three missed refreshes
# mean it is gone (stopped, killed, or its host is down).
STALE_AFTER_S = 15.0

_PHASE_ORDER = list(DelegationPhase)


@dataclass(frozen=True)
class DelegationRow:
    """One open delegation, whatever the number of store rows behind it."""

    id: str
    from_agent: str
    to_agent: str
    state: str
    age_s: int
    refs: tuple[str, ...] = ()  # the issues / merge requests its task names, short forms


@dataclass(frozen=True)
class TurnRow:
    """One turn in flight (attempts and age: None where the source does not say)."""

    event_id: str
    agent_id: str
    state: str
    attempts: int | None
    age_s: int | None


@dataclass(frozen=True)
class LoopRow:
    """One supervised loop of the gateway."""

    name: str
    restarts: int
    backing_off: bool
    last_error: str | None


@dataclass(frozen=True)
class DeviceRow:
    """One identity's end-to-end encryption device."""

    identity: str
    device_id: str
    one_time_keys: int
    waiting: int  # encrypted events waiting for their room key
    failures: int  # encrypted events given up on since the gateway started


def device_rows(raw: object) -> list[DeviceRow]:
    """The ``encryption`` list of a status (published, or from the API)."""
    rows = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            rows.append(
                DeviceRow(
                    identity=str(item.get("identity", "?")),
                    device_id=str(item.get("device_id", "?")),
                    one_time_keys=int(item.get("one_time_keys") or 0),
                    waiting=int(item.get("undecryptable_waiting") or 0),
                    failures=int(item.get("decryption_failures") or 0),
                )
            )
    return rows


@dataclass(frozen=True)
class GatewayInfo:
    """The gateway's last published status, and whether it is still running."""

    name: str
    pid: int | None
    updated_ms: int
    running: bool
    loops: list[LoopRow] = field(default_factory=list)
    access: str | None = None  # who may reach the agents (AccessConfig.describe)
    devices: list[DeviceRow] = field(default_factory=list)  # encryption, per identity

    def age_s(self, now_ms: int | None = None) -> int:
        """Seconds since the gateway last refreshed its status."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return max(0, (now - self.updated_ms) // 1000)


@dataclass(frozen=True)
class StatusReport:
    """Open delegations, turns in flight, and the gateway (None: none ever ran here).

    From the gateway's API: ``api_url`` is where it answered, and ``problems`` what
    its own checks (store, homeserver) found wrong.
    """

    delegations: list[DelegationRow] = field(default_factory=list)
    turns: list[TurnRow] = field(default_factory=list)
    gateway: GatewayInfo | None = None
    api_url: str | None = None
    problems: list[str] = field(default_factory=list)
    store_bytes: int | None = None  # the store's size on disk (None: not told)


def gateway_info(raw: dict[str, Any], now_ms: int) -> GatewayInfo:
    """The published status, judged: fresh (≤ STALE_AFTER_S) and its pid alive = running."""
    pid = raw.get("pid")
    pid = pid if isinstance(pid, int) else None
    updated = raw.get("updated_ms")
    updated = updated if isinstance(updated, int) else 0
    fresh = now_ms - updated <= STALE_AFTER_S * 1000
    running = fresh and (pid is None or pid_alive(pid))
    loops = [
        LoopRow(
            name=str(loop.get("name", "?")),
            restarts=int(loop.get("restarts") or 0),
            backing_off=bool(loop.get("backing_off")),
            last_error=loop.get("last_error"),
        )
        for loop in raw.get("loops") or []
        if isinstance(loop, dict)
    ]
    access = raw.get("access")
    access = access if isinstance(access, str) else None
    devices = device_rows(raw.get("encryption"))
    return GatewayInfo(str(raw.get("gateway", "?")), pid, updated, running, loops, access, devices)


def merge_delegations(rows: list[dict[str, Any]], now_ms: int) -> list[DelegationRow]:
    """One line per delegation id, in order of creation.

    With both agents in one gateway the store has a row each way ('out' for the
    delegator, 'in' for the target) under the same id. The line shows the
    furthest state either side has reached; the delegation is open while either
    side still is.
    """
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    merged = []
    for delegation_id, group in by_id.items():
        phases = [DelegationPhase(r["state"]) for r in group]
        if all(p in TERMINAL_PHASES for p in phases):
            continue
        furthest = max(phases, key=_PHASE_ORDER.index)
        first = min(group, key=lambda r: (r["direction"] != "out", r["created_at"]))
        merged.append(
            DelegationRow(
                id=delegation_id,
                from_agent=first["from_agent"],
                to_agent=first["to_agent"],
                state=furthest.value,
                age_s=max(0, (now_ms - min(r["created_at"] for r in group)) // 1000),
                refs=tuple(labels_of(_json(first.get("refs")))),
            )
        )
    return sorted(merged, key=lambda d: -d.age_s)


def _json(text: object) -> object:
    with contextlib.suppress(ValueError, TypeError):
        return json.loads(text) if isinstance(text, str) else None
    return None


_OPEN_DELEGATIONS = (
    " FROM delegations WHERE id IN (SELECT id FROM delegations"
    "   WHERE state NOT IN ('completed', 'failed', 'rejected', 'timeout'))"
    " ORDER BY created_at"
)
_OPEN_TURNS = (
    "SELECT event_id, agent_id, state, attempts, updated_at FROM turns"
    " WHERE state IN ('admitted', 'running') ORDER BY updated_at"
)

_SET_ASIDE = (
    "SELECT txn_id, tries, reason FROM appservice_parked WHERE set_aside_at IS NOT NULL ORDER BY n"
)


def set_aside_problems(rows: Iterable[tuple[str, int, str | None]]) -> list[str]:
    """One line per parked appservice transaction set aside (given up on)."""
    return [
        f"appservice transaction {txn_id} set aside after {tries} failed tries ({reason});"
        " once fixed, `salon appservice retry` makes it due again"
        for txn_id, tries, reason in rows
    ]


async def read_store_status(url: str, *, now_ms: int | None = None) -> StatusReport:
    """The report from a PostgreSQL store (``store.url``), through the store itself."""
    from salon.store import Store

    now = int(time.time() * 1000) if now_ms is None else now_ms
    store = await Store.open(url, pool_size=1)
    try:
        db = store.db
        cols = "id, direction, from_agent, to_agent, state, created_at, refs"
        rows = [dict(r) for r in await db.fetchall(f"SELECT {cols}" + _OPEN_DELEGATIONS)]
        turns = [
            TurnRow(
                r["event_id"],
                r["agent_id"],
                r["state"],
                r["attempts"],
                max(0, (now - r["updated_at"]) // 1000),
            )
            for r in await db.fetchall(_OPEN_TURNS)
        ]
        set_aside = [(p.txn_id, p.tries, p.reason) for p in await store.appservice_txns.set_aside()]
        raw = await db.fetchval("SELECT value FROM kv WHERE key = $1", STATUS_KEY)
        reload_raw = await db.fetchval("SELECT value FROM kv WHERE key = $1", RELOAD_STATUS_KEY)
        size = await store.size_bytes()
    finally:
        await store.close()
    gateway = None
    with contextlib.suppress(ValueError, TypeError):
        published = json.loads(raw)
        if isinstance(published, dict):
            gateway = gateway_info(published, now)
    problems = reload_problems(None if reload_raw is None else (reload_raw,))
    problems += set_aside_problems(set_aside)
    return StatusReport(
        merge_delegations(rows, now), turns, gateway, problems=problems, store_bytes=size
    )


def read_status(db_path: Path, *, now_ms: int | None = None) -> StatusReport:
    """Read the report; a clear error if there is no store yet."""
    if not db_path.exists():
        raise ConfigError(f"{db_path}: no store here yet; start Salon first (`salon up`)")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    uri = f"file:{db_path}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            db.row_factory = sqlite3.Row
            # A store a gateway has not migrated yet has no refs column.
            columns = {c[1] for c in db.execute("PRAGMA table_info(delegations)")}
            refs = ", refs" if "refs" in columns else ""
            rows = [
                dict(r)
                for r in db.execute(
                    f"SELECT id, direction, from_agent, to_agent, state, created_at{refs}"
                    + _OPEN_DELEGATIONS
                )
            ]
            turns = [
                TurnRow(
                    event_id=r["event_id"],
                    agent_id=r["agent_id"],
                    state=r["state"],
                    attempts=r["attempts"],
                    age_s=max(0, (now - r["updated_at"]) // 1000),
                )
                for r in db.execute(_OPEN_TURNS)
            ]
            row = db.execute("SELECT value FROM kv WHERE key = ?", (STATUS_KEY,)).fetchone()
            reload_row = db.execute(
                "SELECT value FROM kv WHERE key = ?", (RELOAD_STATUS_KEY,)
            ).fetchone()
            set_aside: list[tuple[str, int, str | None]] = []
            # A store a gateway has not migrated yet has no such column.
            if "set_aside_at" in {c[1] for c in db.execute("PRAGMA table_info(appservice_parked)")}:
                set_aside = [tuple(r) for r in db.execute(_SET_ASIDE)]
    except sqlite3.Error as e:
        raise StoreError(f"{db_path}: cannot read the store: {e}") from e
    gateway = None
    if row is not None:
        with contextlib.suppress(ValueError, TypeError):
            raw = json.loads(row[0])
            if isinstance(raw, dict):
                gateway = gateway_info(raw, now)
    return StatusReport(
        merge_delegations(rows, now),
        turns,
        gateway,
        problems=reload_problems(reload_row) + set_aside_problems(set_aside),
        store_bytes=sqlite_size_bytes(db_path),
    )


def reload_problems(row: Any) -> list[str]:
    """What the last config reload refused, or could only apply after a restart."""
    if row is None:
        return []
    try:
        last = json.loads(row[0])
    except (ValueError, TypeError):
        return []
    if not isinstance(last, dict):
        return []
    if not last.get("ok"):
        return [f"the last config reload was refused: {last.get('error')}"]
    restart = last.get("needs_restart") or []
    return [f"config changes need a restart: {', '.join(restart)}"] if restart else []
