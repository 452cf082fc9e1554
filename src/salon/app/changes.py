"""Changing a running gateway: a reloaded config, a session agent started, routing
swapped. (The live add/remove work itself is in :mod:`salon.gateway.live`.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from salon._exceptions import ConfigError
from salon.config.models import SalonConfig
from salon.gateway.cron import jobs_from_config
from salon.gateway.live import Parts, apply_config
from salon.gateway.reload import ConfigDiff, Reloader
from salon.gateway.sessions import new_session_id, with_session_agents
from salon.store.session_agents import SessionAgent

if TYPE_CHECKING:
    from salon.api.server import ApiServer
    from salon.app.gateway import Gateway
    from salon.gateway.cron import CronScheduler
    from salon.roster import Roster
    from salon.routing.router import Router
    from salon.store import Store


class LiveChanges:
    """The live-change half of :class:`~salon.app.gateway.Gateway`."""

    config: SalonConfig
    store: Store | None
    roster: Roster | None
    reloader: Reloader | None
    api: ApiServer | None
    session_agents: dict[str, SessionAgent]
    ended_sessions: set[str]
    _file_config: SalonConfig
    _parts: Parts | None
    _cron: CronScheduler | None
    _router: Router | None

    async def apply_config(self, new: SalonConfig, diff: ConfigDiff) -> None:
        """Change the running gateway to ``new`` where it can change live (a reload)."""
        assert self._parts is not None
        await apply_config(cast("Gateway", self), self._parts, new, diff)
        if self._cron is not None:
            self._cron.set_jobs(jobs_from_config(self.config, self._parts.agent_users))

    async def spawn_session(
        self, template: str, ttl_s: float, idle_s: float | None, name: str | None
    ) -> str:
        """Start a session agent copied from ``template``; returns its id once it runs."""
        assert self.store is not None and self.reloader is not None
        if template not in self._file_config.agents:
            raise ConfigError(f"from: unknown agent {template!r}")
        agent_id = new_session_id(self.config, template, name)
        await self.store.session_agents.create(
            agent_id, template, ttl_s=ttl_s, idle_s=idle_s, label=name
        )
        result = await self.reloader.apply()
        if not result.ok or self.roster is None or agent_id not in self.roster:
            await self.store.session_agents.end(agent_id, "failed")
            raise ConfigError(f"the session agent did not start: {result.error or 'unknown'}")
        return agent_id

    async def compose(self, config: SalonConfig) -> SalonConfig:
        """``config`` plus the session agents the store says are active."""
        assert self.store is not None
        rows = await self.store.session_agents.active()
        self.ended_sessions = set(self.session_agents) - {r.agent_id for r in rows}
        self.session_agents = {r.agent_id: r for r in rows}
        return with_session_agents(config, rows)

    async def _set_router(self, router: Router) -> None:
        old, self._router = self._router, router
        if self._parts is not None:
            self._parts.messages.router = router
        if self.api is not None:
            self.api.context.router = router
        if old is not None:
            await old.aclose()
