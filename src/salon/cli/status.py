"""`salon status`: what a gateway is doing, read from its store (read-only)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salon._exceptions import ConfigError
from salon.store.kv import GATEWAY_STATUS_KEY as STATUS_KEY


@dataclass(frozen=True)
class StatusReport:
    """Open delegations, turns in flight, and supervised loops of one store."""

    delegations: list[dict[str, Any]] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    gateway: dict[str, Any] = field(default_factory=dict)


def read_status(db_path: Path) -> StatusReport:
    """Read the report; a clear error if there is no store yet."""
    if not db_path.exists():
        raise ConfigError(f"{db_path}: no store here yet; start Salon first (`salon up`)")
    uri = f"file:{db_path}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=5) as db:
        db.row_factory = sqlite3.Row
        now = int(time.time() * 1000)
        delegations = [
            {**dict(r), "age_s": (now - r["created_at"]) // 1000}
            for r in db.execute(
                "SELECT id, direction, from_agent, to_agent, state, created_at, deadline_ts"
                " FROM delegations"
                " WHERE state NOT IN ('completed', 'failed', 'rejected', 'timeout')"
                " ORDER BY created_at"
            )
        ]
        turns = [
            {**dict(r), "age_s": (now - r["updated_at"]) // 1000}
            for r in db.execute(
                "SELECT event_id, agent_id, state, attempts, updated_at FROM turns"
                " WHERE state IN ('admitted', 'running') ORDER BY updated_at"
            )
        ]
        row = db.execute("SELECT value FROM kv WHERE key = ?", (STATUS_KEY,)).fetchone()
    gateway = json.loads(row[0]) if row else {}
    return StatusReport(delegations, turns, gateway)
