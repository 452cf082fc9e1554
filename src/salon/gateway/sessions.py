"""Session agents in a running gateway: their config, their marker, the janitor.

A session agent is a copy of an existing agent's config under its own id, user
and room (`salon agent spawn --from coder --ttl 2h`). It lives in the store, not
in salon.yaml: the gateway adds the active ones to the config it runs with, at
start and on every reload, so they start and end through the same live
add/remove path as agents added to or removed from the file. The janitor ends a
session agent after its TTL or its idle limit and asks for a reload: it goes
offline and leaves the Space list, and the room with its history stays for
audit (the router takes it over, as for any removed agent: see live).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Callable, Sequence

import structlog

from salon._exceptions import ConfigError, SalonError
from salon.config.models import AGENT_ID_RE, SalonConfig
from salon.store import Store
from salon.store.records import now_ms
from salon.store.session_agents import SessionAgent
from salon.supervisor import LoopHandle

log = structlog.get_logger("salon.gateway.sessions")

SESSION_STATE = "com.salon.agent.session"  # state event marking a room's agent temporary
JANITOR_EVERY_S = 2.0
# Spawned together, many session agents should not hit the homeserver in one instant.
START_JITTER_S = 2.0


def with_session_agents(config: SalonConfig, rows: Sequence[SessionAgent]) -> SalonConfig:
    """``config`` plus the session agents in ``rows`` (each a copy of its template)."""
    agents = dict(config.agents)
    for row in rows:
        template = config.agents.get(row.template)
        if template is None or row.agent_id in agents:
            log.warning("session.skipped", agent=row.agent_id, template=row.template)
            continue
        copy = template.model_copy(
            update={
                "label": row.label or f"{template.display_label} ({row.agent_id})",
                "localpart": None,
                "matrix": None,
            }
        )
        copy._id = row.agent_id  # the id the config would have given it
        agents[row.agent_id] = copy
    return config.model_copy(update={"agents": agents})


def new_session_id(config: SalonConfig, template: str, name: str | None) -> str:
    """A free agent id for a session agent: ``name`` (checked) or ``<template>-<hex>``."""
    if name:
        agent_id = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:32]
    else:
        agent_id = f"{template[:25]}-{secrets.token_hex(3)}"
    if not AGENT_ID_RE.match(agent_id):
        raise ConfigError(f"--name: {name!r} does not make a valid agent id")
    if agent_id in config.agents or agent_id in config.peers:
        raise ConfigError(f"--name: an agent {agent_id!r} exists already")
    return agent_id


class Janitor:
    """Ends session agents after their TTL or idle limit (a supervised loop)."""

    def __init__(self, store: Store, request_reload: Callable[[], None]) -> None:
        self.store = store
        self.request_reload = request_reload

    async def sweep(self) -> list[str]:
        """End what is due now; returns the agents ended."""
        now = now_ms()
        ended = []
        for row in await self.store.session_agents.active():
            reason = None
            if now >= row.expires_at:
                reason = "ttl"
            elif row.idle_s is not None:
                last = await self.store.session_agents.last_turn_ms(row.agent_id)
                if now - max(last or 0, row.created_at) >= row.idle_s * 1000:
                    reason = "idle"
            if reason and await self.store.session_agents.end(row.agent_id, reason):
                log.info("session.ended", agent=row.agent_id, reason=reason)
                ended.append(row.agent_id)
        if ended:
            self.request_reload()
        return ended

    async def run(self, handle: LoopHandle) -> None:
        while True:
            with contextlib.suppress(SalonError):
                await self.sweep()
            handle.healthy()
            await asyncio.sleep(JANITOR_EVERY_S)
