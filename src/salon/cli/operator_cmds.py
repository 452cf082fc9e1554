"""`salon who`, `send`, `read`, `delegate` and `status`: the operator commands.

Each fetches its data from the running gateway's HTTP API (:mod:`salon.cli.via_api`)
when one answers, found through ``--api URL`` or ``<data-dir>/api.json``; otherwise
from :mod:`salon.cli.direct` (the operator's Matrix account, or the store file).
Both return the same types, so the rendering (:mod:`salon.cli.operator_render`)
does not know which one answered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from salon._exceptions import SalonError
from salon.cli import direct, pidfile, via_api
from salon.cli import operator as ops
from salon.cli.operator_render import _render_status, _render_who
from salon.cli.options import (
    DEFAULT_DATA_DIR,
    ApiToken,
    ApiUrl,
    ConfigOption,
    DataDir,
    Verbose,
    _dd,
    _fail,
)
from salon.cli.output import console, err
from salon.config import load_config


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
        elif cfg is not None and not cfg.store.is_sqlite:
            report = direct.status_at(cfg.store.url)  # PostgreSQL: through the store
        else:
            db_path = Path(cfg.store.sqlite_path) if cfg is not None else data_dir / "salon.db"
            report = direct.status(db_path)
    except via_api.ApiCallError as e:
        raise _fail(str(e), e.exit_code) from None
    except SalonError as e:
        raise _fail(str(e)) from None
    _render_status(report)
