"""`salon agent spawn`: a temporary session agent, copied from an existing one.

It is recorded in the store; the running gateway starts it on its next reload
(asked for at once) with its own user and room in the Space, and the janitor
ends it after its TTL or idle limit (the room and its history stay).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from salon._exceptions import SalonError
from salon.cli.agent_setup import ConfigArg, DataDirArg, _fail, _say, _setup, _tell_gateway
from salon.config.models import SalonConfig
from salon.gateway.sessions import new_session_id
from salon.store import Store
from salon.store.session_agents import SessionAgent

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, key: str) -> float:
    """Seconds of ``90``, ``90s``, ``30m``, ``2h``, ``1d``; ConfigError-like exit otherwise."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise _fail(f"{key}: {text!r} is not a duration like 90s, 30m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


async def spawn_agent(
    config: SalonConfig,
    template: str,
    *,
    ttl_s: float,
    idle_s: float | None,
    name: str | None,
    store_url: str | None = None,
) -> SessionAgent:
    """Record a session agent copied from ``template`` (the gateway starts it)."""
    if template not in config.agents:
        known = ", ".join(config.agents)
        raise SalonError(f"--from: unknown agent {template!r} (known: {known})")
    store = await Store.open(store_url or config.store.url)
    try:
        active = {a.agent_id for a in await store.session_agents.active()}
        taken = config.model_copy(update={"agents": {**config.agents, **dict.fromkeys(active)}})
        agent_id = new_session_id(taken, template, name)
        return await store.session_agents.create(
            agent_id, template, ttl_s=ttl_s, idle_s=idle_s, label=name
        )
    finally:
        await store.close()


def spawn(
    template: Annotated[str, typer.Option("--from", help="The agent whose config to copy.")],
    ttl: Annotated[str, typer.Option("--ttl", help="How long it lives: 90s, 30m, 2h, 1d.")],
    name: Annotated[str | None, typer.Option("--name", help="Its id and label.")] = None,
    idle: Annotated[
        str | None, typer.Option("--idle", help="End it after this long without a turn.")
    ] = None,
    config: ConfigArg = None,
    data_dir: DataDirArg = None,
) -> None:
    """Start a temporary session agent from an existing agent's config."""
    ttl_s = parse_duration(ttl, "--ttl")
    idle_s = parse_duration(idle, "--idle") if idle else None
    try:
        setup = _setup(config, data_dir)
        # `salon up` keeps its store in its data dir, whatever the file says.
        url = None if config is not None else f"sqlite:///{(setup.data_dir / 'salon.db').resolve()}"
        row = asyncio.run(
            spawn_agent(
                setup.config, template, ttl_s=ttl_s, idle_s=idle_s, name=name, store_url=url
            )
        )
    except SalonError as e:
        raise _fail(str(e)) from None
    until = datetime.fromtimestamp(row.expires_at / 1000).strftime("%Y-%m-%d %H:%M:%S")
    _say(
        f"[green]✓[/] Session agent {escape(row.agent_id)} (a copy of {escape(template)})"
        f" lives until {until}" + (f", or {escape(idle or '')} idle" if idle else "") + "."
    )
    _tell_gateway(setup.data_dir if config is None else Path(setup.config.data_dir))
