"""Changing a running gateway: a reloaded config, session agents, routing swapped.
(Adding, changing and removing one hosted agent is :mod:`salon.gateway.live`.)"""

from __future__ import annotations

from salon.app.running import RunningGateway
from salon.config.models import SalonConfig
from salon.gateway.cron import jobs_from_config
from salon.gateway.live import build_backends, log_access_policy
from salon.gateway.reload import ConfigDiff
from salon.gateway.sessions import with_session_agents
from salon.ids import AgentId
from salon.roster import Roster
from salon.routing.router import Router
from salon.store import Store
from salon.store.session_agents import SessionAgent


class SessionAgents:
    """The session agents the store says are active (they run beside the configured
    ones), as of the last :meth:`compose`."""

    def __init__(self) -> None:
        self.active: dict[str, SessionAgent] = {}  # store rows, by session agent id

    async def compose(self, store: Store, config: SalonConfig) -> SalonConfig:
        """``config`` plus the session agents active now."""
        rows = await store.session_agents.active()
        self.active = {r.agent_id: r for r in rows}
        return with_session_agents(config, rows)


async def apply_config(
    running: RunningGateway, sessions: SessionAgents, new: SalonConfig, diff: ConfigDiff
) -> None:
    """Change the running gateway to ``new`` where it can change live."""
    old = running.config
    # Keep what only a restart can change; say so (the reloader logs and stores it).
    keep = {s: getattr(old, s) for s in diff.restart if s != "router"}
    if "router" in diff.restart:
        keep["router"] = old.router
    new = new.model_copy(update=keep)
    # Every new or changed backend first: a broken one refuses the whole reload.
    built = await build_backends(new, [*diff.added, *diff.changed])
    new_roster = Roster.from_config(new)
    live, pipeline = running.live, running.pipeline
    for agent_id in map(AgentId, diff.added):
        await live.add(new, new_roster, agent_id, built[agent_id], sessions.active.get(agent_id))
    for agent_id in map(AgentId, diff.changed):
        await live.change(new, new_roster, agent_id, built[agent_id])
    # One switch: routing, commands and delegation see the new who-is-who together.
    roster = running.roster
    roster.replace_with(new_roster)
    running.config = new
    pipeline.coordinator.reconfigure(new)
    pipeline.messages.contexts.access = pipeline.reactions.access = new.access
    if diff.access:
        log_access_policy(new.access)
    if diff.routing or diff.added or diff.removed or diff.changed:
        await pipeline.routing.swap(Router.from_config(new, roster), running.api)
    for agent_id in map(AgentId, diff.removed):
        await live.remove(agent_id)
    if running.mcp is not None:  # servers gone or changed stop; allow-lists apply at once
        await running.mcp.apply(new)
    pipeline.cron.set_jobs(jobs_from_config(new, running.hosted.users))
