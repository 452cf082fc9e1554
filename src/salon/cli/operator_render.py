"""What `salon who` and `salon status` print: tables, ages and durations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from salon.cli import operator as ops
from salon.cli.options import _dd, _fail
from salon.cli.output import console, err
from salon.cli.status import StatusReport
from salon.store.records import now_ms


def _render_who(result: ops.WhoResult, data_dir: Path) -> None:
    if result.space_error:
        err.print("[yellow]Space unavailable:[/]", escape(result.space_error), highlight=False)
    table = Table("agent", "room", "status", "last beat", "user")
    for column in table.columns:
        column.overflow = "fold"
    colours = {"online": "green", "busy": "yellow", "offline": "red"}
    for row in result.agents:
        beat = _ago(row.last_beat_ms) if row.last_beat_ms else "never"
        colour = colours[row.status.value]
        until = getattr(row, "temporary_until_ms", None)
        name = escape(row.agent) + (f" (temporary, ends in {_in(until)})" if until else "")
        table.add_row(
            name,
            escape(row.alias),
            f"[{colour}]{row.status.value}[/]",
            beat,
            escape(row.user_id),
        )
    if not result.agents:
        raise _fail(
            "no agent rooms found. Is the gateway running?"
            f" See `salon status{_dd(data_dir)}` and `salon logs{_dd(data_dir)}`.",
            1,
        )
    console.print(table)


def _render_status(report: StatusReport) -> None:
    gw = report.gateway
    pid = f" (pid {gw.pid})" if gw is not None and gw.pid is not None else ""
    if gw is None:
        console.print("gateway: no gateway has run on this store yet", highlight=False)
    elif gw.running and report.api_url:
        console.print(
            f"gateway [bold]{escape(gw.name)}[/]{pid}: [green]running[/],"
            f" its API answers at {escape(report.api_url)}",
            highlight=False,
        )
    elif gw.running:
        console.print(
            f"gateway [bold]{escape(gw.name)}[/]{pid}: [green]running[/],"
            f" status updated {_ago(gw.updated_ms)}",
            highlight=False,
        )
    else:
        console.print(
            f"gateway [bold]{escape(gw.name)}[/]{pid}: [red]not running[/]"
            f" (last seen {_ago(gw.updated_ms)})",
            highlight=False,
        )
    if gw is not None and gw.access:
        console.print(f"access: {escape(gw.access)}", highlight=False)
    for problem in report.problems:
        console.print(f"[yellow]{escape(problem)}[/]", highlight=False)
    if report.store_bytes is not None:
        console.print(f"store: {_size(report.store_bytes)} on disk", highlight=False)
    table = Table("from", "to", "state", "age", "refs", "id", title="open delegations")
    for d in report.delegations:
        table.add_row(
            escape(d.from_agent),
            escape(d.to_agent),
            d.state,
            _duration(d.age_s),
            escape(", ".join(getattr(d, "refs", ()) or ())),
            escape(d.id),
        )
    console.print(table)
    table = Table("agent", "event", "state", "attempts", "age", title="turns in flight")
    for t in report.turns:
        table.add_row(
            escape(t.agent_id),
            escape(t.event_id),
            t.state,
            "-" if t.attempts is None else str(t.attempts),
            "-" if t.age_s is None else _duration(t.age_s),
        )
    console.print(table)
    if gw is not None and gw.devices:
        table = Table(
            "identity", "device", "one-time keys", "waiting", "failures", title="encryption"
        )
        for device in gw.devices:
            table.add_row(
                escape(device.identity),
                escape(device.device_id),
                str(device.one_time_keys),
                str(device.waiting),
                str(device.failures),
            )
        console.print(table)
    if gw is not None and gw.running:
        table = Table("loop", "restarts", "backing off", "last error", title="restarting loops")
        for loop in gw.loops:
            if loop.restarts:
                table.add_row(
                    escape(loop.name),
                    str(loop.restarts),
                    "yes" if loop.backing_off else "no",
                    escape(loop.last_error or ""),
                )
        console.print(table)


def _size(size: int) -> str:
    """Bytes for a person: 812 B, 3.4 MB, 1.2 GB."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _in(ms: int) -> str:
    """How long until the epoch-ms ``ms``, for people (``0s`` once past)."""
    return _duration(max(ms - now_ms(), 0) // 1000)


def _ago(ms: int) -> str:
    return f"{_duration(max(0, int(datetime.now(UTC).timestamp() - ms / 1000)))} ago"
