"""`salon agent list` and `salon agent show`: the agents of a config, secrets masked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from salon._exceptions import SalonError
from salon.agents.profile import SOUL
from salon.agents.skills import skills, skills_dir
from salon.cli.agent_setup import UP_SERVER_NAME, ConfigArg, DataDirArg, Setup, _fail, _say, _setup
from salon.cli.output import console
from salon.config import HomeserverConfig, read_persona
from salon.config.mcp import mcp_allow_list
from salon.config.models import SalonConfig
from salon.roster import Roster


def list_agents(config: ConfigArg = None, data_dir: DataDirArg = None) -> None:
    """Agents and teams of the config (backend, description, skills), then peers."""
    try:
        setup = _setup(config, data_dir)
    except SalonError as e:
        raise _fail(str(e)) from None
    cfg = setup.config
    table = Table("id", "kind", "label", "backend", "description", "skills")
    for column in table.columns:
        column.overflow = "fold"
    for agent_id, agent in cfg.agents.items():
        kind = "team" if getattr(agent.backend, "type", "") == "team" else "agent"
        count = "-" if kind == "team" else str(len(skills(setup.home(agent_id))))
        summary = _backend_summary(agent.backend)
        table.add_row(
            *_cells(agent_id, kind, agent.display_label, summary, agent.description, count)
        )
    for peer_id, peer in cfg.peers.items():
        where = f"elsewhere: {peer.user_id}"
        table.add_row(*_cells(peer_id, "peer", peer.display_label, where, peer.description, "-"))
    console.print(table)


def _rows(setup: Setup, agent_id: str) -> Iterator[tuple[str, str]]:
    """``show``'s lines: (what, value), values already escaped."""
    cfg = setup.config
    agent = cfg.agents[agent_id]
    backend = agent.backend
    team = getattr(backend, "type", "") == "team"
    yield ("id", escape(agent_id) + (" (team)" if team else ""))
    yield ("label", escape(agent.display_label))
    yield ("description", escape(agent.description) or "[dim](none)[/]")
    member = _roster(cfg).member(agent_id)
    note = "" if cfg.homeserver is not None else " [dim](as `salon up` names it)[/]"
    yield ("user", escape(member.user_id) + note)
    yield ("room", escape(member.room_alias) + note)
    if team:
        yield ("members", escape(", ".join(backend.members)))  # type: ignore[union-attr]
        yield ("lead", escape(backend.lead))  # type: ignore[union-attr]
        yield ("mode", escape(backend.mode))  # type: ignore[union-attr]
    else:
        dumped = redact(backend.model_dump(mode="json", exclude_defaults=True))
        dumped = {"type": getattr(backend, "type", "?"), **dumped}
        yield ("backend", escape(_inline(dumped)[1:-1]))
    if agent.matrix is not None:
        yield ("matrix", "credentials configured [dim](not shown)[/]")
    if agent.can_delegate_to is not None:
        yield ("delegates to", escape(", ".join(agent.can_delegate_to)) or "nobody")
    yield ("tools", _tools(cfg, agent_id))
    home = setup.home(agent_id)
    yield ("home", escape(str(home)) + ("" if home.is_dir() else " [dim](not created yet)[/]"))
    soul = home / SOUL
    if soul.is_file():
        yield ("SOUL.md", f"present ({soul.stat().st_size} bytes)")
    else:
        persona = read_persona(agent)
        first = (persona or "").strip().splitlines()[0][:80] if persona else ""
        yield ("SOUL.md", "absent" + (f"; config persona: {escape(first)}" if first else ""))
    found = skills(home)
    listing = ", ".join(f"{name} ({size} bytes)" for name, size in found)
    yield ("skills", escape(listing) if found else f"none ({escape(str(skills_dir(home)))}/*.md)")
    for job in agent.cron:
        room = job.room or member.room_alias
        prompt = job.prompt if len(job.prompt) <= 60 else job.prompt[:59] + "…"
        yield (
            f"cron {escape(job.id)}",
            escape(f"{job.schedule} ({job.timezone}) → {room}, catch_up {job.catch_up}: {prompt}"),
        )
    if not agent.cron:
        yield ("cron", "none")


def show(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent or team id.")],
    config: ConfigArg = None,
    data_dir: DataDirArg = None,
) -> None:
    """One agent: its config (no secrets), user and room, home dir, SOUL.md, skills, cron."""
    try:
        setup = _setup(config, data_dir)
        if agent_id not in setup.config.agents:
            if agent_id in setup.config.peers:
                peer = setup.config.peers[agent_id]
                _say(f"{escape(agent_id)} is a peer, hosted by another gateway: {peer.user_id}")
                return
            known = ", ".join(setup.config.agents)
            raise _fail(f"unknown agent {agent_id!r} (known: {known})", 1)
        rows = list(_rows(setup, agent_id))
    except SalonError as e:
        raise _fail(str(e)) from None
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        _say(f"[bold]{escape(key.ljust(width))}[/]  {value}")


def _tools(cfg: SalonConfig, agent_id: str) -> str:
    """The tools the agent's model is offered: delegate (when it has targets) and its MCP
    tools by server (as the model sees them: ``mcp__<server>__<tool>``)."""
    parts = ["delegate"] if cfg.delegation_targets(agent_id) else []
    own = cfg.agents[agent_id].mcp_servers
    for server, tools in mcp_allow_list(cfg, agent_id).items():
        where = cfg.mcp_servers_of(agent_id)[server]
        what = "all tools" if tools is None else ", ".join(sorted(tools))
        kind = ("own " if server in own else "") + where.transport
        parts.append(f"mcp__{server}__* ({server}, {kind}: {what})")
    return escape("; ".join(parts)) if parts else "none"


def _roster(cfg: SalonConfig) -> Roster:
    if cfg.homeserver is None:  # a config for `salon up`, which supplies the homeserver
        homeserver = HomeserverConfig(url="http://localhost:8008", server_name=UP_SERVER_NAME)
        cfg = cfg.model_copy(update={"homeserver": homeserver})
    return Roster.from_config(cfg)


def _backend_summary(backend: Any) -> str:
    kind = getattr(backend, "type", "?")
    if kind == "openai":
        return f"openai {backend.model}"
    if kind == "http":
        return f"http {_safe_url(backend.base_url)}"
    if kind == "python":
        return f"python {backend.entry}"
    if kind == "team":
        return f"team ({backend.mode}): {', '.join(backend.members)}; lead {backend.lead}"
    return str(kind)


_SECRET_KEY = re.compile(r"key|token|secret|passw|auth|cookie|credential", re.IGNORECASE)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redact(value: Any, key: str = "") -> Any:
    """``value`` with secrets masked: header values, keys that name a secret (but not
    ``*_env``, which name a variable), passwords in URLs."""
    if isinstance(value, dict):
        if key == "headers":
            return {k: "***" for k in value}
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and not key.endswith("_env"):
            return "***"
        return _safe_url(value) if "://" in value else value
    return value


def _inline(value: Any) -> str:
    """``value`` as YAML flow style, roughly: ``{type: http, headers: {A: ***}}``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _cells(*values: str) -> list[Text]:
    """Table cells taken literally: no markup, no ``:emoji:`` codes."""
    return [Text(value) for value in values]
