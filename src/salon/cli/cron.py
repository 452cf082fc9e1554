"""`salon cron list`: every agent's cron jobs, with their last and next run.

The jobs come from the config file; the runs from the store, read-only (a
running gateway keeps writing it), so the command works with or without one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from salon._exceptions import SalonError, StoreError
from salon.cli.output import console, err, error_line
from salon.config import load_config
from salon.config.models import SalonConfig
from salon.gateway.cron import Schedule
from salon.store.cron import LAST_RUNS_SQL, CronRun, cron_run

app = typer.Typer(help="Per-agent scheduled prompts (`cron:` under an agent).")

DEFAULT_CONFIG = Path("examples/salon.yaml")
DEFAULT_DATA_DIR = Path("salon-data")


@dataclass(frozen=True)
class CronRow:
    """One job as `salon cron list` shows it (``schedule`` None: no longer configured)."""

    agent_id: str
    job_id: str
    schedule: str | None
    timezone: str
    target: str
    catch_up: str
    last: CronRun | None
    next_ts: float | None


def last_runs(db_path: Path) -> dict[tuple[str, str], CronRun]:
    """Each job's latest run in the store at ``db_path`` (none if there is no store yet)."""
    if not db_path.exists():
        return {}
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        ) as db:
            db.row_factory = sqlite3.Row
            known = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cron_runs'"
            ).fetchone()
            if known is None:  # a store from before cron: nothing ran
                return {}
            rows = db.execute(LAST_RUNS_SQL).fetchall()
    except sqlite3.Error as e:
        raise StoreError(f"{db_path}: cannot read the store: {e}") from e
    return {(r["agent_id"], r["job_id"]): cron_run(r) for r in rows}


def cron_rows(
    config: SalonConfig, runs: dict[tuple[str, str], CronRun], now: float
) -> list[CronRow]:
    """The configured jobs in config order, then jobs that ran but are configured no more."""
    rows = []
    for agent_id, agent in config.agents.items():
        for job in agent.cron:
            schedule = Schedule(job.schedule, job.timezone)
            rows.append(
                CronRow(
                    agent_id=agent_id,
                    job_id=job.id,
                    schedule=job.schedule,
                    timezone=job.timezone,
                    target=job.room or f"#{config.agent_room_alias_localpart(agent_id)}",
                    catch_up=job.catch_up,
                    last=runs.get((agent_id, job.id)),
                    next_ts=schedule.next_after(now),
                )
            )
    configured = {(r.agent_id, r.job_id) for r in rows}
    for (agent_id, job_id), run in sorted(runs.items()):
        if (agent_id, job_id) not in configured:
            rows.append(CronRow(agent_id, job_id, None, "UTC", "-", "-", run, None))
    return rows


def _when(ts: float | None, timezone: str) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _last(run: CronRun | None, timezone: str) -> str:
    if run is None:
        return "never"
    state = run.turn_state or run.state
    extra = ", caught up" if run.catch_up else ""
    return f"{_when(run.scheduled_ts, timezone)} ({state}{extra})"


def render(rows: list[CronRow]) -> None:
    """The jobs as a table."""
    table = Table(
        "agent", "job", "schedule", "tz", "room", "catch-up", "last run", "next run", title="cron"
    )
    for row in rows:
        table.add_row(
            escape(row.agent_id),
            escape(row.job_id),
            escape(row.schedule) if row.schedule is not None else "[dim](not configured)[/]",
            escape(row.timezone),
            escape(row.target),
            row.catch_up,
            escape(_last(row.last, row.timezone)),
            _when(row.next_ts, row.timezone),
        )
    console.print(table)
    if not rows:
        console.print("No cron jobs: add `cron:` entries under an agent.", highlight=False)


@app.command("list")
def list_jobs(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The salon.yaml whose jobs to list (default: the demo config); without"
            " --data-dir its store is read.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", "-d", help="Read the store `salon up --data-dir` keeps there."),
    ] = None,
) -> None:
    """Every agent's cron jobs: schedule, time zone, room, last run and next run."""
    try:
        cfg = load_config(config or DEFAULT_CONFIG)
        if data_dir is not None or config is None:
            db_path = (data_dir or DEFAULT_DATA_DIR) / "salon.db"
        else:
            db_path = Path(cfg.store.sqlite_path)
        rows = cron_rows(cfg, last_runs(db_path), time.time())
    except SalonError as e:
        err.print(error_line(str(e)), highlight=False)
        raise typer.Exit(2) from None
    render(rows)
