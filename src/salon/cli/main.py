"""The `salon` command.

Each operator command fetches its data and renders it here. The data comes from
the running gateway's HTTP API (:mod:`salon.cli.via_api`) when one answers,
found through ``--api URL`` or ``<data-dir>/api.json``; otherwise from
:mod:`salon.cli.direct` (the operator's Matrix account, or the store file).
Both return the same types, so the rendering does not know which one answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from salon._exceptions import SalonError
from salon.cli import agents_cmd, direct, pidfile, spawn, via_api
from salon.cli import cron as cron_cli
from salon.cli import operator as ops
from salon.cli.output import console, err, error_line
from salon.cli.status import StatusReport
from salon.config import load_config
from salon.store.records import now_ms

app = typer.Typer(
    name="salon",
    help="One gateway process that hosts many AI agents on Matrix.",
    no_args_is_help=True,
    add_completion=False,
)

DataDir = Annotated[
    Path, typer.Option("--data-dir", "-d", help="Where `salon up` keeps its state.")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="A salon.yaml run with `salon run`: use its data_dir instead."
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar="SALON_API_URL",
        help="The gateway's HTTP API (default: the one <data-dir>/api.json names);"
        " used if it answers, else the command works without it.",
    ),
]
ApiToken = Annotated[
    str | None,
    typer.Option(
        "--api-token",
        envvar="SALON_API_TOKEN",
        show_default=False,
        help="Bearer token for --api (api.json has its own).",
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Say whether the gateway's API or the direct path answers."
    ),
]
DEFAULT_DATA_DIR = Path("salon-data")
DEFAULT_DEMO_CONFIG = Path("examples/salon.yaml")
DEFAULT_PORT = 8008


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(error_line(message), highlight=False)
    return typer.Exit(code)


def _dd(data_dir: Path) -> str:
    return pidfile.data_dir_flag(data_dir)


def _operator_error(e: SalonError, data_dir: Path) -> typer.Exit:
    """The exit for an operator command's failure, with what to do about it."""
    if isinstance(e, via_api.ApiCallError):
        return _fail(str(e), e.exit_code)
    if isinstance(e, via_api.GatewayHomeserverUnreachable):
        running = pidfile.running(data_dir)
        hint = f". See `salon logs{_dd(data_dir)} --synapse`." if running is not None else ""
        return _fail(f"{e}{hint}", 1)
    if isinstance(e, ops.HomeserverUnreachable):
        running = pidfile.running(data_dir)
        if running is None:
            hint = (
                f"Salon is not running from {data_dir}:"
                f" start it with `make demo` or `salon up{_dd(data_dir)}`."
            )
        else:
            hint = (
                f"{running.label} runs from {data_dir} but its homeserver does not answer;"
                f" see `salon logs{_dd(data_dir)} --synapse`."
            )
        return _fail(f"{e}. {hint}", 1)
    return _fail(str(e))


def _api(
    data_dir: Path, url: str | None, token: str | None, verbose: bool
) -> via_api.Endpoint | None:
    """The gateway's API if it answers (``--api``, else ``api.json``); None: go direct."""
    found = via_api.discover(data_dir, url=url, token=token)
    if verbose:
        err.print(f"[dim]{escape(found.note)}[/]", highlight=False)
    return found.endpoint


def _data_dir_of(data_dir: Path, config: Path | None) -> Path:
    """``--data-dir``, or the ``data_dir`` of ``--config`` when one is given."""
    return Path(load_config(config).data_dir) if config is not None else data_dir


def _up_command(ctx: typer.Context) -> str:
    """`salon up` with the options the person gave on the command line."""
    words = ["salon", "up"]
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name is None:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params.get(param.name)
        flag = max(param.opts, key=len)
        if isinstance(value, bool):
            if value:
                words.append(flag)
        elif value is not None:
            words += [flag, shlex.quote(str(value))]
    return " ".join(words)


@app.command()
def up(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Agents to run (default: the demo config).")
    ] = DEFAULT_DEMO_CONFIG,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    port: Annotated[
        int,
        typer.Option(envvar="SALON_PORT", help="Port of the embedded homeserver."),
    ] = DEFAULT_PORT,
    operator: Annotated[str, typer.Option(help="Localpart of your operator account.")] = "operator",
    log_level: Annotated[str, typer.Option(help="Level of the log file.")] = "info",
    openai_base_url: Annotated[
        str | None,
        typer.Option(
            envvar="SALON_OPENAI_BASE_URL",
            help="OpenAI-compatible endpoint for the demo's `assistant` agent.",
        ),
    ] = None,
    openai_model: Annotated[
        str | None,
        typer.Option(envvar="SALON_OPENAI_MODEL", help="Model name for that endpoint."),
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option(
            envvar="SALON_API_PORT",
            min=0,
            max=65535,
            show_default=False,
            help="Port of the HTTP API on 127.0.0.1 (default: 8765 or the next free one;"
            " 0: any free port).",
        ),
    ] = None,
) -> None:
    """Start an embedded Synapse and the gateway with demo agents; Ctrl-C stops both.

    Logs go to <data-dir>/salon.log (`salon logs -f`); `salon stop` stops it.
    The HTTP API's URL and token are in <data-dir>/api.json while it runs.
    """
    from salon import log
    from salon.cli.up import up as run_up
    from salon.store.db import ensure_private_dir

    # The demo config reads these through ${SALON_OPENAI_BASE_URL} / ${SALON_OPENAI_MODEL}.
    if openai_base_url:
        os.environ["SALON_OPENAI_BASE_URL"] = openai_base_url
    if openai_model:
        os.environ["SALON_OPENAI_MODEL"] = openai_model
    try:
        cfg = load_config(config)
        # Tokens, the operator's password and every message live under it: owner only.
        ensure_private_dir(data_dir)
        with pidfile.holding(data_dir, "up"):
            log.configure(log_level, file=data_dir / "salon.log", console_level="warning")
            asyncio.run(
                run_up(
                    cfg,
                    data_dir,
                    port=port,
                    operator=operator,
                    console=console,
                    restart_command=_up_command(ctx),
                    api_port=api_port,
                    config_path=config,
                )
            )
    except SalonError as e:
        raise _fail(str(e)) from None
    except OSError as e:  # the data dir, its pid file or its log cannot be written
        raise _fail(str(e)) from None


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The salon.yaml to run.")],
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the gateway against any homeserver named in the config.

    Logs go to stderr and to <data_dir>/salon.log (`salon logs -c CONFIG -f`);
    `salon stop -c CONFIG` stops it. With an `api:` section, <data_dir>/api.json
    says where the HTTP API listens (and its token) while it runs.
    """
    from salon import log
    from salon.cli.run import serve

    try:
        cfg = load_config(config)
        if cfg.homeserver is None:
            raise _fail(f"{config}: homeserver: required for `salon run` (url, server_name)")
        data_dir = Path(cfg.data_dir)
        with pidfile.holding(data_dir, "run"):
            log.configure(log_level, file=data_dir / "salon.log")
            console.print(
                f"Starting Salon with {len(cfg.agents)} agents on {cfg.homeserver.url}…",
                highlight=False,
            )
            asyncio.run(
                serve(cfg, data_dir, console, load=lambda: load_config(config), watch=config)
            )
    except SalonError as e:
        raise _fail(str(e)) from None
    except OSError as e:  # the data dir, its pid file or its log cannot be written
        raise _fail(str(e)) from None


@app.command()
def stop(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for it to exit.")] = 30.0,
) -> None:
    """Stop the `salon up` or `salon run` that runs from a data dir (SIGTERM, then wait)."""
    try:
        data_dir = _data_dir_of(data_dir, config)
        result = pidfile.stop(data_dir, timeout_s=timeout)
    except SalonError as e:
        raise _fail(str(e)) from None
    except PermissionError as e:
        raise _fail(f"cannot stop the Salon of {data_dir}: {e}", 1) from None
    if result.info is None:
        stale = f" (removed the stale pid file of {result.stale.label})" if result.stale else ""
        err.print(f"Salon is not running from {escape(str(data_dir))}{stale}.", highlight=False)
        raise typer.Exit(1)
    if not result.stopped:
        raise _fail(
            f"{result.info.label} is still running after {timeout:g} s;"
            f" try again, or `kill -9 {result.info.pid}`",
            1,
        )
    console.print(
        f"[green]✓[/] Stopped {result.info.label} in {result.waited_s:.1f} s.", highlight=False
    )


@app.command()
def logs(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    config: ConfigOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C ends).")
    ] = False,
    n: Annotated[int, typer.Option("-n", min=0, help="How many of the last lines.")] = 50,
    synapse: Annotated[
        bool, typer.Option("--synapse", help="The embedded homeserver's log instead.")
    ] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Lines as written (JSON).")] = False,
) -> None:
    """Show the gateway's log (<data-dir>/salon.log), or follow it with -f."""
    from salon.cli import logs as logfile

    try:
        data_dir = _data_dir_of(data_dir, config)
    except SalonError as e:
        raise _fail(str(e)) from None
    path = logfile.log_path(data_dir, synapse=synapse)
    if not path.exists() and not follow:
        start = "salon up" if synapse else f"`salon up{_dd(data_dir)}` or `salon run`"
        raise _fail(f"{path}: no log here yet; it is written by {start}", 1)

    def emit(line: str) -> None:
        sys.stdout.write((line if raw else logfile.format_line(line)) + "\n")
        sys.stdout.flush()

    try:
        size = path.stat().st_size if path.exists() else 0
        if size:
            for line in logfile.tail(path, n, end=size):
                emit(line)
        if follow:
            logfile.follow(path, emit, offset=size)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `salon logs | head`: the reader is gone, so are we
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as e:
        raise _fail(f"{path}: {e}", 1) from None


@app.command()
def who(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    api: ApiUrl = None,
    api_token: ApiToken = None,
    verbose: Verbose = False,
) -> None:
    """List every agent with its room and whether it is online."""
    try:
        endpoint = _api(data_dir, api, api_token, verbose)
        result = via_api.who(endpoint) if endpoint else direct.who(data_dir)
    except SalonError as e:
        raise _operator_error(e, data_dir) from None
    _render_who(result, data_dir)


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


@app.command()
def send(
    text: Annotated[str, typer.Argument(help="What to say.")],
    to: Annotated[str | None, typer.Option("--to", help="Agent id; default: the lobby.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 30.0,
    wait: Annotated[
        bool | None, typer.Option(help="Wait for a reply (default: yes with --to).")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    api: ApiUrl = None,
    api_token: ApiToken = None,
    verbose: Verbose = False,
) -> None:
    """Post a message to an agent's room (and print its reply) or to the lobby."""
    waiting = wait if wait is not None else to is not None
    wait_s = timeout if waiting else None
    try:
        endpoint = _api(data_dir, api, api_token, verbose)
        if endpoint is not None:
            reply = via_api.send(endpoint, text, to=to, wait_s=wait_s)
        else:
            reply = direct.send(data_dir, text, to=to, wait_s=wait_s)
    except ops.ReplyTimeout as e:
        raise _fail(f"{to or 'lobby'}: {e} (is the gateway running? try `salon who`)", 1) from None
    except SalonError as e:
        raise _operator_error(e, data_dir) from None
    if reply is None:
        console.print(f"Sent to {to or 'the lobby'}.", highlight=False)
    elif reply.notice:
        # An error notice from the agent (its backend failed): say so in the exit status.
        err.print(reply.body, markup=False, highlight=False, style="yellow")
        raise typer.Exit(1)
    else:
        console.print(reply.body, markup=False, highlight=False)


@app.command()
def read(
    room: Annotated[str, typer.Option("--room", help="An agent id, or 'lobby'.")] = "lobby",
    n: Annotated[int, typer.Option("-n", min=1, max=500, help="How many messages.")] = 20,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    api: ApiUrl = None,
    api_token: ApiToken = None,
    verbose: Verbose = False,
) -> None:
    """Print the recent messages of an agent's room or the lobby (edits applied)."""
    try:
        # The API returns at most 200 messages; more are read directly.
        endpoint = _api(data_dir, api, api_token, verbose) if n <= via_api.MAX_READ_LIMIT else None
        if endpoint is not None:
            messages = via_api.read(endpoint, room, n)
        else:
            messages = direct.read(data_dir, room, n)
    except SalonError as e:
        raise _operator_error(e, data_dir) from None
    for m in messages:
        stamp = datetime.fromtimestamp(m.ts / 1000, UTC).astimezone().strftime("%H:%M:%S")
        style = "dim" if m.notice else ""
        console.print(f"[dim]{stamp}[/] [bold]{escape(m.sender)}[/]: ", end="", highlight=False)
        console.print(m.body, style=style, markup=False, highlight=False)


@app.command()
def delegate(
    task: Annotated[str, typer.Argument(help="What to ask.")],
    frm: Annotated[str, typer.Option("--from", help="The agent that delegates.")],
    to: Annotated[str, typer.Option("--to", help="The agent that does the task.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 120.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    api: ApiUrl = None,
    api_token: ApiToken = None,
    verbose: Verbose = False,
) -> None:
    """Ask agent --from to delegate a task to agent --to, and print the outcome."""
    try:
        endpoint = _api(data_dir, api, api_token, verbose)
        if endpoint is not None:
            reply = via_api.delegate(endpoint, task, frm=frm, to=to, wait_s=timeout)
        else:
            reply = direct.delegate(data_dir, task, frm=frm, to=to, wait_s=timeout)
    except ops.ReplyTimeout as e:
        raise _fail(f"{frm} → {to}: {e}", 1) from None
    except SalonError as e:
        raise _operator_error(e, data_dir) from None
    if reply is not None and reply.notice:
        err.print(reply.body, markup=False, highlight=False, style="yellow")
        raise typer.Exit(1)
    console.print(reply.body if reply else "", markup=False, highlight=False)


@app.command()
def status(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    config: ConfigOption = None,
    api: ApiUrl = None,
    api_token: ApiToken = None,
    verbose: Verbose = False,
) -> None:
    """Whether the gateway runs, open delegations, turns in flight, restarting loops."""
    try:
        cfg = load_config(config) if config is not None else None
        if cfg is not None:
            data_dir = Path(cfg.data_dir)
        endpoint = _api(data_dir, api, api_token, verbose)
        if endpoint is not None:
            report = via_api.status(endpoint)
        else:
            db_path = Path(cfg.store.sqlite_path) if cfg is not None else data_dir / "salon.db"
            report = direct.status(db_path)
    except via_api.ApiCallError as e:
        raise _fail(str(e), e.exit_code) from None
    except SalonError as e:
        raise _fail(str(e)) from None
    _render_status(report)


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
    for problem in report.problems:
        console.print(f"[yellow]{escape(problem)}[/]", highlight=False)
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


app.add_typer(cron_cli.app, name="cron")
agents_cmd.app.command("spawn")(spawn.spawn)
app.add_typer(agents_cmd.app, name="agent")
app.command("reload")(agents_cmd.reload)


def main() -> None:
    """Entry point of the `salon` script."""
    app()
