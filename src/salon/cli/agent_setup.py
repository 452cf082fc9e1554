"""What every agent command starts from, and how it speaks.

The ``--config`` / ``--data-dir`` options, the :class:`Setup` they resolve to,
and the output helpers: say, fail, and ask the running gateway to reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from salon.cli import pidfile
from salon.cli.output import console, err, error_line
from salon.config import load_config
from salon.config.models import SalonConfig

DEFAULT_CONFIG = Path("examples/salon.yaml")
DEFAULT_DATA_DIR = Path("salon-data")
# `salon up` supplies the homeserver section of a config without one; this is its server.
UP_SERVER_NAME = "localhost"

ConfigArg = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The salon.yaml (default: the demo config `salon up` runs).",
        show_default=False,
    ),
]
DataDirArg = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Where the agents' home dirs are and the gateway runs from (default: the"
        " config's data_dir with --config, else salon-data, as `salon up`).",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class Setup:
    """What an agent command works on: the config file, its config and the data dir."""

    path: Path
    config: SalonConfig
    data_dir: Path

    def home(self, agent_id: str) -> Path:
        """The agent's home dir, as the gateway builds it."""
        return self.data_dir / "agents" / agent_id


def _setup(config: Path | None, data_dir: Path | None) -> Setup:
    path = config or DEFAULT_CONFIG
    cfg = load_config(path)
    if data_dir is None:
        data_dir = Path(cfg.data_dir) if config is not None else DEFAULT_DATA_DIR
    return Setup(path, cfg, data_dir)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(error_line(message), highlight=False)
    return typer.Exit(code)


def _say(message: str) -> None:
    """Print ``message`` (rich markup; what came from the config is escaped in it)."""
    console.print(message, highlight=False, emoji=False)


def _tell_gateway(data_dir: Path) -> None:
    """Ask the gateway running from ``data_dir`` to reload, and say what happened."""
    try:
        result = pidfile.reload(data_dir)
    except OSError as e:
        _say(f"Could not signal the gateway of {escape(str(data_dir))}: {escape(str(e))}.")
        return
    if result.sent and result.info is not None:
        _say(f"Asked {escape(result.info.label)} to reload its config.")
    elif result.info is not None:
        _say(
            f"{escape(result.info.label)} does not reload on SIGHUP (it predates hot reload):"
            " restart it to apply the change."
        )
    else:
        _say(
            f"No gateway runs from {escape(str(data_dir))}: the change applies when it"
            " starts (for a `salon up`, give its --data-dir)."
        )
