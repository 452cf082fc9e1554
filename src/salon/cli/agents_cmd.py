"""`salon agent list | show | add | remove` and `salon reload`.

``add`` and ``remove`` edit the config file in place with ruamel.yaml's
round-trip mode, so its comments, key order and quoting stay as they were
(:mod:`salon.cli.yaml_edit`, :mod:`salon.cli.yaml_comments`); ``remove`` finds
and removes what names the agent with :mod:`salon.cli.agent_refs`. The result is
validated with the real loader before anything is written, and written
atomically, only if nobody changed the file in the meantime.

Then the running gateway is asked to reload (SIGHUP, see :func:`reload`).
``list`` and ``show`` are :mod:`salon.cli.agent_show`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Annotated

import typer
from rich.markup import escape
from ruamel.yaml.comments import CommentedMap

from salon._exceptions import SalonError
from salon.agents.profile import SOUL, AgentProfile
from salon.cli import pidfile
from salon.cli.agent_refs import Reference, references, remove_agent
from salon.cli.agent_setup import (
    DEFAULT_CONFIG,
    DEFAULT_DATA_DIR,
    UP_SERVER_NAME,
    ConfigArg,
    DataDirArg,
    Setup,
    _fail,
    _say,
    _setup,
    _tell_gateway,
)
from salon.cli.agent_show import list_agents, redact, show
from salon.cli.options import ConfigOption, DataDir, _data_dir_of
from salon.cli.output import err
from salon.cli.yaml_comments import _append
from salon.cli.yaml_edit import Document, EditRefused, splice, write_atomic
from salon.config import parse_config
from salon.config.loader import resolve_entry_point
from salon.config.models import SalonConfig
from salon.ids import AgentId

# What this module offered before its parts moved out (imported from here elsewhere).
__all__ = [
    "BACKENDS",
    "DEFAULT_CONFIG",
    "DEFAULT_DATA_DIR",
    "UP_SERVER_NAME",
    "ConfigArg",
    "DataDirArg",
    "Document",
    "EditRefused",
    "Reference",
    "Setup",
    "add",
    "app",
    "list_agents",
    "redact",
    "references",
    "reload",
    "remove",
    "remove_agent",
    "show",
    "splice",
    "write_atomic",
]

app = typer.Typer(help="The agents of a config: list, show, add, remove.", no_args_is_help=True)
BACKENDS = ("echo", "openai", "http", "python")

app.command("list")(list_agents)
app.command("show")(show)


def _validate(doc: Document, text: str, what: str) -> SalonConfig:
    try:
        return parse_config(
            text.replace("\r\n", "\n"),
            source=str(doc.path),
            base_dir=doc.path.resolve().parent,
        )
    except SalonError as e:
        raise EditRefused(f"{doc.path} is unchanged: {what}, it would not load:\n{e}") from None


def _new_agent(
    backend: str,
    label: str | None,
    description: str | None,
    model: str | None,
    base_url: str | None,
    entry: str | None,
) -> CommentedMap:
    wrong = [
        flag
        for flag, value, allowed in (
            ("--model", model, ("openai",)),
            ("--base-url", base_url, ("openai", "http")),
            ("--entry", entry, ("python",)),
        )
        if value is not None and backend not in allowed
    ]
    if wrong:
        raise EditRefused(f"{', '.join(wrong)}: not an option of the {backend} backend")
    agent = CommentedMap()
    if label is not None:
        agent["label"] = label
    if description is not None:
        agent["description"] = description
    spec = CommentedMap()
    spec["type"] = backend
    for key, value in (("base_url", base_url), ("model", model), ("entry", entry)):
        if value is not None:
            spec[key] = value
    agent["backend"] = spec
    return agent


def _default_soul(agent_id: str, label: str | None, description: str | None) -> str:
    name = label or agent_id.title()
    about = f" {description.strip().rstrip('.')}." if description else ""
    return f"You are {name}, an agent in a Matrix chat.{about}\n"


@app.command("add")
def add(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The new agent's id.")],
    label: Annotated[str | None, typer.Option(help="How people see it (default: Id).")] = None,
    description: Annotated[
        str | None, typer.Option(help="What it does (the router reads it).")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="echo, openai, http or python.", case_sensitive=False)
    ] = "echo",
    model: Annotated[str | None, typer.Option(help="openai: the model name.")] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="openai / http: the endpoint.")
    ] = None,
    entry: Annotated[
        str | None, typer.Option(help="python: the factory, 'package.module:Factory'.")
    ] = None,
    persona: Annotated[
        str | None,
        typer.Option(help="Its persona, written to <home>/SOUL.md (default: a short one)."),
    ] = None,
    config: ConfigArg = None,
    data_dir: DataDirArg = None,
) -> None:
    """Add an agent to the config file, with its home dir and SOUL.md; reload the gateway.

    The file is edited in place: its comments, order and quoting are kept. The
    result is checked with the loader before it is written.
    """
    backend = backend.lower()
    if backend not in BACKENDS:
        raise _fail(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    try:
        setup = _setup(config, data_dir)
        doc = Document.read(setup.path)
        cfg = setup.config
        if agent_id in cfg.agents:
            what = "a team" if agent_id in cfg.teams else "an agent"
            raise EditRefused(f"{agent_id!r} is already {what} of {setup.path}")
        if agent_id in cfg.peers:
            raise EditRefused(f"{agent_id!r} is a peer of {setup.path} (another gateway's agent)")
        agents = doc.mapping("agents")
        if agents is None:
            raise EditRefused(f"{setup.path}: no `agents:` mapping to add to")
        _append(agents, agent_id, _new_agent(backend, label, description, model, base_url, entry))
        text = doc.text()
        _validate(doc, text, f"with agent {agent_id!r} added")
        home = setup.home(agent_id)
        AgentProfile(AgentId(agent_id), agent_id, "", home).ensure_home()
        soul = home / SOUL
        wrote_soul = False
        with contextlib.suppress(FileExistsError):
            fd = os.open(soul, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(
                    persona if persona is not None else _default_soul(agent_id, label, description)
                )
            wrote_soul = True
        write_atomic(setup.path, text, doc.raw)
    except SalonError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"{e}", 1) from None
    _say(f"[green]✓[/] Added agent {escape(agent_id)} to {escape(str(setup.path))}.")
    if doc.reformatted:
        _say(f"[yellow]note:[/] {doc.reformatted} other lines were re-indented by the YAML writer.")
    if entry is not None:
        try:
            resolve_entry_point(entry)
        except ValueError as e:  # the gateway's environment may have it; say so, not refuse
            _say(f"[yellow]note:[/] --entry {escape(entry)}: {escape(str(e))} (here).")
    if wrote_soul:
        _say(f"Its home is {escape(str(home))}, with a new SOUL.md.")
    else:
        extra = " (--persona not written)" if persona is not None else ""
        _say(f"Its home is {escape(str(home))}; kept the SOUL.md already there{extra}.")
    _tell_gateway(setup.data_dir)


@app.command("remove")
def remove(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent or team to remove.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also remove the routes, team places and default_agent naming it."
        ),
    ] = False,
    config: ConfigArg = None,
    data_dir: DataDirArg = None,
) -> None:
    """Remove an agent (or team) from the config file; reload the gateway.

    Refused while routes, teams, delegation lists or default_agent name it, unless
    --force, which removes those too. Its home dir and Matrix room are kept.
    """
    try:
        setup = _setup(config, data_dir)
        cfg = setup.config
        if agent_id not in cfg.agents:
            if agent_id in cfg.peers:
                raise EditRefused(
                    f"{agent_id!r} is a peer (hosted by another gateway): edit `peers:` in"
                    f" {setup.path}"
                )
            known = ", ".join(cfg.agents)
            raise EditRefused(f"unknown agent {agent_id!r} (known: {known})")
        doc = Document.read(setup.path)
        refs = references(doc, agent_id)
        if refs and not force:
            lines = "\n".join(
                f"  {ref.where}" + (f" (line {ref.line})" if ref.line else "") for ref in refs
            )
            raise EditRefused(
                f"{agent_id} is still named by:\n{lines}\n"
                f"{setup.path} is unchanged; edit those, or remove them too with --force"
            )
        done = remove_agent(doc, agent_id)
        text = doc.text()
        _validate(doc, text, f"without {agent_id!r}")
        write_atomic(setup.path, text, doc.raw)
    except SalonError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"{e}", 1) from None
    _say(f"[green]✓[/] Removed {escape(agent_id)} from {escape(str(setup.path))}.")
    for step in done:
        _say(f"  {escape(step)}")
    if doc.reformatted:
        _say(f"[yellow]note:[/] {doc.reformatted} other lines were re-indented by the YAML writer.")
    _say(
        f"Kept its home dir {escape(str(setup.home(agent_id)))} and its Matrix room"
        " (with its history); it leaves the Space list."
    )
    _tell_gateway(setup.data_dir)


def reload(data_dir: DataDir = DEFAULT_DATA_DIR, config: ConfigOption = None) -> None:
    """Ask the running `salon up` / `salon run` to re-read its config (SIGHUP)."""
    try:
        data_dir = _data_dir_of(data_dir, config)
        result = pidfile.reload(data_dir)
    except SalonError as e:
        raise _fail(str(e)) from None
    except PermissionError as e:
        raise _fail(f"cannot signal the Salon of {data_dir}: {e}", 1) from None
    if result.info is None:
        err.print(pidfile.not_running(data_dir, result.stale), markup=False, highlight=False)
        raise typer.Exit(1)
    if not result.sent:
        raise _fail(
            f"{result.info.label} does not reload on SIGHUP (it predates hot reload);"
            " restart it to apply a config change",
            1,
        )
    _say(
        f"[green]✓[/] Asked {escape(result.info.label)} to reload its config;"
        " `salon logs` says what it applied or refused."
    )
