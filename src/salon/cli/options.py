"""The options the `salon` commands share, their defaults, and how they fail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from salon.cli import pidfile
from salon.cli.output import err, error_line
from salon.config import load_config

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


def _data_dir_of(data_dir: Path, config: Path | None) -> Path:
    """``--data-dir``, or the ``data_dir`` of ``--config`` when one is given."""
    return Path(load_config(config).data_dir) if config is not None else data_dir
