"""`salon up`, `run`, `stop` and `logs`: start, stop and watch a Salon process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from salon._exceptions import SalonError
from salon.cli import pidfile
from salon.cli.options import (
    DEFAULT_DATA_DIR,
    DEFAULT_DEMO_CONFIG,
    DEFAULT_PORT,
    ConfigOption,
    DataDir,
    _data_dir_of,
    _dd,
    _fail,
)
from salon.cli.output import console, err
from salon.config import load_config


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
    mode: Annotated[
        str,
        typer.Option(
            help="client (each agent logs in and syncs) or appservice (Synapse pushes"
            " events to the gateway, which acts as every agent; see docs/appservice.md).",
        ),
    ] = "client",
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
    if mode not in ("client", "appservice"):
        raise _fail(f"--mode: client or appservice, got {mode!r}")
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
                    mode=mode,
                )
            )
    except SalonError as e:
        raise _fail(str(e)) from None
    except OSError as e:  # the data dir, its pid file or its log cannot be written
        raise _fail(str(e)) from None


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
        err.print(pidfile.not_running(data_dir, result.stale), markup=False, highlight=False)
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
