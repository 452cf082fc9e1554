"""The gateway: one process hosting many agents on one homeserver.

:meth:`Gateway.start` builds a :class:`~salon.app.running.RunningGateway` step by
step (:mod:`salon.app.assemble`) in one exit stack; :meth:`Gateway.stop` closes
that stack, so everything is torn down in the reverse order it was started.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import structlog

from salon._exceptions import ConfigError
from salon.api.context import LoopState
from salon.api.server import ApiServer
from salon.app.assemble import Plan, assemble
from salon.app.changes import SessionAgents, apply_config
from salon.app.running import GatewayState, RunningGateway
from salon.app.status import loop_states
from salon.app.stopping import drain, on_stop_signals
from salon.config.models import SalonConfig
from salon.gateway.delegated_turns import Coordinator
from salon.gateway.live import log_access_policy
from salon.gateway.reload import ConfigDiff, Reloader
from salon.gateway.sessions import new_session_id
from salon.ids import UserId
from salon.matrix.source import LoopStatus
from salon.roster import Roster
from salon.store import Store

log = structlog.get_logger("salon.gateway")

__all__ = ["Gateway", "GatewayState", "ReloadSource", "on_stop_signals"]


@dataclass(frozen=True)
class ReloadSource:
    """Where a reload (SIGHUP, `salon reload`, or the file changing) reads the config:
    ``load`` reads it again, ``watch`` is the file whose changes trigger one. Without
    ``load`` the running config never changes."""

    load: Callable[[], SalonConfig] | None = None
    watch: Path | None = None


class Gateway:
    """One process hosting many agents on one homeserver."""

    def __init__(
        self,
        config: SalonConfig,
        *,
        invite: Sequence[UserId] = (),
        name: str | None = None,
        ready_timeout_s: float = 60.0,
        reload: ReloadSource | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """``reload``: see :class:`ReloadSource`. ``secrets``:
        values of variables the config names, given here instead of in the environment
        (which every backend and child process would inherit)."""
        if config.homeserver is None:
            raise ValueError("config.homeserver is required")
        reload = reload or ReloadSource()
        self.name = name or socket.gethostname()
        self._plan = Plan(
            config=config,  # as written (before session agents)
            name=self.name,
            invite=[UserId(u) for u in (*config.access.admins, *invite)],
            ready_timeout_s=ready_timeout_s,
            # Without a way to read the file again, a reload re-applies the config the
            # gateway started with (session agents still come and go).
            load=reload.load or (lambda: config),
            watch=reload.watch,
            secrets=dict(secrets or {}),
        )
        self.sessions = SessionAgents()
        self._running: RunningGateway | None = None
        self._stack: AsyncExitStack | None = None
        self._up = asyncio.Event()  # set while running (changes wait for it)
        self._stop_now = asyncio.Event()  # a graceful shutdown is to end at once

    # --- what the CLI and tests read (None unless running) ----------------------------

    @property
    def running(self) -> RunningGateway | None:
        return self._running

    @property
    def secrets(self) -> Mapping[str, str]:
        return self._plan.secrets

    @property
    def config(self) -> SalonConfig:
        """The running config (with session agents, as last reloaded), else as written."""
        return self._running.config if self._running else self._plan.config

    @property
    def state(self) -> GatewayState | None:
        return self._running.state if self._running else None

    @property
    def store(self) -> Store | None:
        return self._running.store if self._running else None

    @property
    def roster(self) -> Roster | None:
        return self._running.roster if self._running else None

    @property
    def api(self) -> ApiServer | None:
        return self._running.api if self._running else None

    @property
    def reloader(self) -> Reloader | None:
        return self._running.reloader if self._running else None

    @property
    def coordinator(self) -> Coordinator | None:
        return self._running.pipeline.coordinator if self._running else None

    def loops(self) -> list[LoopState]:
        """Every receive loop and supervised loop, with its health."""
        if self._running is None:
            return []
        return loop_states(self._running.homeserver.source, self._running.supervisor)

    def loop_status(self) -> list[LoopStatus]:
        """Per-identity sync loop state."""
        return self._running.homeserver.source.status() if self._running else []

    # --- starting and stopping ------------------------------------------------------

    async def start(self) -> GatewayState:
        """Boot everything; returns once every identity has synced once. A step that
        fails tears down the steps before it (in reverse) and raises."""
        if self._running is not None:
            return self._running.state
        stack = AsyncExitStack()
        try:
            running = await assemble(stack, self._plan, self.sessions, self)
        except BaseException:
            await stack.aclose()
            raise
        self._running, self._stack = running, stack
        self._up.set()
        log_access_policy(running.config.access)  # who may reach the agents
        log.info("gateway.ready", agents=sorted(running.hosted.runtimes), gateway=self.name)
        return running.state

    async def stop(self) -> None:
        """Stop at once: running turns are cancelled (their rows stay open and resume
        on the next start), heartbeats say offline, loops end, the store closes.
        Safe to call again."""
        stack, self._stack = self._stack, None
        if stack is None:
            return  # never started, or stopped already
        self._up.clear()
        try:
            await stack.aclose()
        finally:
            self._running = None
        log.info("gateway.stopped")

    async def shutdown(self, drain_s: float | None = None) -> int:
        """Stop gracefully: no new turns, running ones finish (up to ``drain_s``,
        default ``shutdown.drain_s``; :meth:`stop_now` ends the wait), then
        :meth:`stop`. Returns how many turns were cut off (they resume on the next
        start)."""
        cut = 0
        try:
            if self._running is not None:
                wait = self.config.shutdown.drain_s if drain_s is None else drain_s
                cut = await drain(self._running.pipeline, wait, self._stop_now)
        finally:
            await self.stop()
        return cut

    def stop_now(self) -> None:
        """End a graceful shutdown's wait at once: running turns are cut off (they
        resume on the next start). Before :meth:`shutdown`, it skips the wait."""
        if not self._stop_now.is_set():
            running = self._running
            turns = len(running.pipeline.runner.in_flight()) if running else 0
            log.warning("gateway.stop_now", turns=turns)
        self._stop_now.set()

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Start, run until SIGINT/SIGTERM (or ``stop`` is set), then shut down
        gracefully (:meth:`shutdown`); a second signal stops at once."""
        stop = stop or asyncio.Event()
        on_stop_signals(stop, self.stop_now)
        try:
            await self.start()
            await stop.wait()
        except BaseException:
            await self.stop()  # a failed start, or cancelled: at once
            raise
        await self.shutdown()

    # --- changing it while it runs (the reloader's and the API's way in) -------------

    async def _ready(self) -> RunningGateway:
        # A reload or an API call may come while the last steps still start.
        await self._up.wait()
        assert self._running is not None
        return self._running

    async def compose(self, config: SalonConfig) -> SalonConfig:
        """``config`` plus the session agents the store says are active."""
        running = await self._ready()
        return await self.sessions.compose(running.store, config)

    async def apply_config(self, new: SalonConfig, diff: ConfigDiff) -> None:
        """Change the running gateway to ``new`` where it can change live (a reload)."""
        await apply_config(await self._ready(), self.sessions, new, diff)

    async def spawn_session(
        self, template: str, ttl_s: float, idle_s: float | None, name: str | None
    ) -> str:
        """Start a session agent copied from ``template``; returns its id once it runs."""
        running = await self._ready()
        if template not in self._plan.config.agents:
            raise ConfigError(f"from: unknown agent {template!r}")
        agent_id = new_session_id(running.config, template, name)
        await running.store.session_agents.create(
            agent_id, template, ttl_s=ttl_s, idle_s=idle_s, label=name
        )
        result = await running.reloader.apply()
        if not result.ok or agent_id not in running.roster:
            await running.store.session_agents.end(agent_id, "failed")
            raise ConfigError(f"the session agent did not start: {result.error or 'unknown'}")
        return agent_id
