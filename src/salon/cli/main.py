"""The `salon` command: its commands and command groups, registered in help order.

- :mod:`salon.cli.process_cmds`: ``up``, ``run``, ``stop``, ``logs``;
- :mod:`salon.cli.operator_cmds`: ``who``, ``send``, ``read``, ``delegate``,
  ``status`` (through the gateway's HTTP API when one answers, else directly);
- :mod:`salon.cli.config_cmd`: ``config check``;
- :mod:`salon.cli.cron`: ``cron``; :mod:`salon.cli.agents_cmd`: ``agent`` and
  ``reload`` (with ``agent spawn`` from :mod:`salon.cli.spawn`).
"""

from __future__ import annotations

import typer

from salon.cli import agents_cmd, appservice_cmd, config_cmd, spawn
from salon.cli import cron as cron_cli
from salon.cli.operator_cmds import delegate, read, send, status, who
from salon.cli.process_cmds import logs, run, stop, up

app = typer.Typer(
    name="salon",
    help="One gateway process that hosts many AI agents on Matrix.",
    no_args_is_help=True,
    add_completion=False,
)

app.command()(up)
app.command()(run)
app.command()(stop)
app.command()(logs)
app.command()(who)
app.command()(send)
app.command()(read)
app.command()(delegate)
app.command()(status)
app.add_typer(config_cmd.app, name="config")
app.add_typer(cron_cli.app, name="cron")
app.add_typer(appservice_cmd.app, name="appservice")
agents_cmd.app.command("spawn")(spawn.spawn)
app.add_typer(agents_cmd.app, name="agent")
app.command("reload")(agents_cmd.reload)


def main() -> None:
    """Entry point of the `salon` script."""
    app()
