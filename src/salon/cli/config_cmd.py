"""`salon config check`: is this salon.yaml one `salon run` would start with?

It loads and validates the file as `salon run` does, then checks what `salon run`
would only find at start-up: a ``homeserver:`` section, credentials for every
identity (the environment variables the config names are set), and the API's
token variables. Nothing is contacted and nothing is written, so it suits a
container's build, a deploy script or ``ExecStartPre=``. It prints one OK line,
or the problems, each naming the file and the key; secret values never appear.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from salon._exceptions import ConfigError
from salon.cli.options import _fail
from salon.cli.output import console, err, error_line
from salon.config import load_config
from salon.config.models import SalonConfig

app = typer.Typer(help="Check the config file.", no_args_is_help=True)


def _unset(name: str | None) -> bool:
    return bool(name) and not os.environ.get(name or "")


def run_problems(config: SalonConfig) -> list[str]:
    """What `salon run` would refuse at start-up in a config that loaded (key: problem)."""
    # Imported here: `salon --help` need not load the Matrix and HTTP layers.
    from salon.gateway.identities import identity_specs

    if config.homeserver is None:
        return ["homeserver: required for `salon run` (url, server_name)"]
    problems = []
    try:
        identity_specs(config)  # every identity has credentials, their variables set
    except ConfigError as e:
        problems.append(str(e))
    appservice = config.homeserver.appservice if config.homeserver.mode == "appservice" else None
    for key in ("as_token_env", "hs_token_env") if appservice else ():
        name = getattr(appservice, key)
        if _unset(name):
            problems.append(f"homeserver.appservice.{key}: environment variable {name} is not set")
    api = config.api
    if api is not None:
        if _unset(api.token_env):
            problems.append(f"api.token_env: environment variable {api.token_env} is not set")
        if api.operator_user_id and not api.operator_token_env:
            problems.append("api.operator_token_env: required with api.operator_user_id")
        elif api.operator_user_id and _unset(api.operator_token_env):
            name = api.operator_token_env
            problems.append(f"api.operator_token_env: environment variable {name} is not set")
    return problems


def _in_file(path: Path, message: str) -> str:
    """``message`` prefixed with the file, unless it names it already."""
    return message if message.startswith(f"{path}:") else f"{path}: {message}"


@app.command("check")
def check(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The salon.yaml to check.", show_default=False)
    ],
) -> None:
    """Validate a config as `salon run` would, without starting anything.

    Prints `<file>: OK …` and exits 0, or one line per problem (file and key) and exits 2.
    """
    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail(_in_file(config, str(e))) from None
    problems = run_problems(cfg)
    for problem in problems:
        err.print(error_line(_in_file(config, problem)), highlight=False)
    if problems:
        raise typer.Exit(2)
    hs = cfg.homeserver
    assert hs is not None
    api = f", API on {cfg.api.listen}" if cfg.api is not None else ""
    console.print(
        f"{config}: OK ({len(cfg.agents)} agents, homeserver {hs.url},"
        f" data in {cfg.data_dir}{api})",
        highlight=False,
        markup=False,
    )
