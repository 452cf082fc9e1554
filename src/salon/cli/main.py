"""The `salon` command."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from salon._exceptions import SalonError
from salon.cli import operator as ops
from salon.cli.operator_file import OperatorFile
from salon.config import load_config

app = typer.Typer(
    name="salon",
    help="One gateway process that hosts many AI agents on Matrix.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path, typer.Option("--data-dir", "-d", help="Where `salon up` keeps its state.")
]
DEFAULT_DATA_DIR = Path("salon-data")
DEFAULT_DEMO_CONFIG = Path("examples/salon.yaml")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


@app.command()
def up(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Agents to run (default: the demo config).")
    ] = DEFAULT_DEMO_CONFIG,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    port: Annotated[int, typer.Option(help="Port of the embedded homeserver.")] = 8008,
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
) -> None:
    """Start an embedded Synapse and the gateway with demo agents; Ctrl-C stops both."""
    import os

    from salon import log
    from salon.cli.up import up as run_up

    # The demo config reads these through ${SALON_OPENAI_BASE_URL} / ${SALON_OPENAI_MODEL}.
    if openai_base_url:
        os.environ["SALON_OPENAI_BASE_URL"] = openai_base_url
    if openai_model:
        os.environ["SALON_OPENAI_MODEL"] = openai_model
    log.configure(log_level, file=data_dir / "salon.log", console_level="warning")
    try:
        cfg = load_config(config)
        asyncio.run(run_up(cfg, data_dir, port=port, operator=operator, console=console))
    except SalonError as e:
        raise _fail(str(e)) from None


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The salon.yaml to run.")],
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the gateway against any homeserver named in the config."""
    from salon import log
    from salon.gateway.app import Gateway

    log.configure(log_level)
    try:
        cfg = load_config(config)
        if cfg.homeserver is None:
            raise _fail(f"{config}: homeserver: required for `salon run` (url, server_name)")
        console.print(f"Starting Salon with {len(cfg.agents)} agents on {cfg.homeserver.url}…")
        asyncio.run(Gateway(cfg).serve())
    except SalonError as e:
        raise _fail(str(e)) from None


@app.command()
def who(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List every agent with its room and whether it is online."""
    try:
        op = OperatorFile.load(data_dir)
        result: ops.WhoResult = asyncio.run(ops.with_operator(op, lambda c: c.who()))
    except SalonError as e:
        raise _fail(str(e)) from None
    if result.space_error:
        err.print(f"[yellow]Space unavailable:[/] {result.space_error}")
    table = Table("agent", "room", "status", "last beat", "user")
    colours = {"online": "green", "busy": "yellow", "offline": "red"}
    for row in result.agents:
        beat = _ago(row.last_beat_ms) if row.last_beat_ms else "never"
        colour = colours[row.status.value]
        table.add_row(row.agent, row.alias, f"[{colour}]{row.status.value}[/]", beat, row.user_id)
    console.print(table)
    if not result.agents:
        raise typer.Exit(1)


@app.command()
def send(
    text: Annotated[str, typer.Argument(help="What to say.")],
    to: Annotated[str | None, typer.Option("--to", help="Agent id; default: the lobby.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 30.0,
    wait: Annotated[
        bool | None, typer.Option(help="Wait for a reply (default: yes with --to).")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Post a message to an agent's room (and print its reply) or to the lobby."""
    try:
        op = OperatorFile.load(data_dir)

        async def action(client: ops.OperatorClient) -> tuple[str, ops.Reply | None]:
            alias = client.agent_alias(to) if to else op.lobby_alias
            waiting = wait if wait is not None else to is not None
            return await client.send(alias, text, wait_s=timeout if waiting else None)

        _event_id, reply = asyncio.run(ops.with_operator(op, action))
    except ops.ReplyTimeout as e:
        raise _fail(f"{to or 'lobby'}: {e} (is the gateway running? try `salon who`)", 1) from None
    except SalonError as e:
        raise _fail(str(e)) from None
    if reply is None:
        console.print(f"Sent to {to or 'the lobby'}.")
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
) -> None:
    """Print the recent messages of an agent's room or the lobby."""
    try:
        op = OperatorFile.load(data_dir)

        async def action(client: ops.OperatorClient) -> list[ops.Message]:
            alias = op.lobby_alias if room == "lobby" else client.agent_alias(room)
            return await client.read(alias, n)

        messages: list[ops.Message] = asyncio.run(ops.with_operator(op, action))
    except SalonError as e:
        raise _fail(str(e)) from None
    for m in messages:
        stamp = datetime.fromtimestamp(m.ts / 1000, UTC).astimezone().strftime("%H:%M:%S")
        style = "dim" if m.notice else ""
        console.print(f"[dim]{stamp}[/] [bold]{m.sender}[/]: ", end="")
        console.print(m.body, style=style, markup=False, highlight=False)


@app.command()
def delegate(
    task: Annotated[str, typer.Argument(help="What to ask.")],
    frm: Annotated[str, typer.Option("--from", help="The agent that delegates.")],
    to: Annotated[str, typer.Option("--to", help="The agent that does the task.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 120.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Ask agent --from to delegate a task to agent --to, and print the outcome."""
    try:
        op = OperatorFile.load(data_dir)

        async def action(client: ops.OperatorClient) -> tuple[str, ops.Reply | None]:
            alias = client.agent_alias(frm)
            client.agent_alias(to)  # a clear error for an unknown target, before sending
            return await client.send(alias, f"!delegate {to} {task}", wait_s=timeout)

        _event_id, reply = asyncio.run(ops.with_operator(op, action))
    except ops.ReplyTimeout as e:
        raise _fail(f"{frm} → {to}: {e}", 1) from None
    except SalonError as e:
        raise _fail(str(e)) from None
    if reply is not None and reply.notice:
        err.print(reply.body, markup=False, highlight=False, style="yellow")
        raise typer.Exit(1)
    console.print(reply.body if reply else "", markup=False, highlight=False)


@app.command()
def status(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Open delegations, turns in flight, and loops that are restarting."""
    from salon.cli.status import read_status

    try:
        report = read_status(data_dir / "salon.db")
    except SalonError as e:
        raise _fail(str(e)) from None
    gw = report.gateway
    if gw:
        age = int(datetime.now(UTC).timestamp() - gw.get("updated_ms", 0) / 1000)
        console.print(
            f"gateway [bold]{gw.get('gateway')}[/] (pid {gw.get('pid')}), updated {age}s ago"
        )
    table = Table("from", "to", "state", "age", "id", title="open delegations")
    for d in report.delegations:
        table.add_row(d["from_agent"], d["to_agent"], d["state"], f"{d['age_s']}s", d["id"])
    console.print(table)
    table = Table("agent", "event", "state", "attempts", "age", title="turns in flight")
    for t in report.turns:
        table.add_row(
            t["agent_id"], t["event_id"], t["state"], str(t["attempts"]), f"{t['age_s']}s"
        )
    console.print(table)
    restarting = [loop for loop in gw.get("loops", []) if loop.get("restarts")]
    table = Table("loop", "restarts", "backing off", "last error", title="restarting loops")
    for loop in restarting:
        table.add_row(
            loop["name"],
            str(loop["restarts"]),
            "yes" if loop["backing_off"] else "no",
            loop.get("last_error") or "",
        )
    console.print(table)


def _ago(ms: int) -> str:
    seconds = max(0, int(datetime.now(UTC).timestamp() - ms / 1000))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def main() -> None:
    """Entry point of the `salon` script."""
    app()
