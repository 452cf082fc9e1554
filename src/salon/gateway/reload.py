"""Hot reload: a changed salon.yaml applied to the running gateway, only what changed.

Triggers: the config file changing (polled, debounced), SIGHUP, `salon reload`
(which sends SIGHUP), `salon agent add/remove`. The new file is validated exactly
as at start; an invalid one is refused with the same file:line:key error, the
running config stays, and the refusal is logged, counted and kept in the store
for `salon status`. A valid one is diffed: a new agent gets its user, room and
Space entry and starts answering; a removed one finishes its turns (bounded),
goes offline, leaves the Space list (its room is kept); a changed persona,
model or backend applies from the next turn; routes, hooks and the default
agent swap at once. Sections that cannot change while running (the homeserver,
the store…) are named in the result instead of being half applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from salon._exceptions import SalonError
from salon.config.models import SalonConfig
from salon.metrics import CONFIG_RELOADS
from salon.store import Store
from salon.store.records import now_ms
from salon.supervisor import LoopHandle

log = structlog.get_logger("salon.gateway.reload")

RELOAD_STATUS_KEY = "gateway:reload"
# Sections a running gateway cannot take over: a change waits for a restart.
RESTART_SECTIONS = (
    "homeserver",
    "store",
    "naming",
    "space",
    "api",
    "sync",
    "ratelimit",
    "heartbeat",
    "turns",
    "replies",
    "data_dir",
    "peers",
    "delegation",
    "locale",
    "dispatch",
    "cluster",
    "encryption",
    "attachments",
)
# Sections a reload applies to the running gateway. Every section of ``SalonConfig`` is
# in one list or the other (a test holds them to it), so none is silently ignored.
LIVE_SECTIONS = (
    "agents",
    "teams",  # folded into agents
    "default_agent",
    "routes",
    "select_agent",
    "routing",
    "router",
    "access",
    "shutdown",  # read when the stop begins
    "approval",  # read at each turn and request (gateway/approvals.py)
)
# The router's own identity cannot change live; its AI settings can.
ROUTER_IDENTITY = ("localpart", "display_name", "matrix")


@dataclass
class ConfigDiff:
    """What a new config changes, by what can be applied live."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    routing: bool = False  # routes, select_agent hooks, default_agent, the AI router
    access: bool = False
    restart: list[str] = field(default_factory=list)  # sections that need a restart

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.routing
            or self.access
            or self.restart
        )


def _dump(value: Any) -> Any:
    """A section as plain data, comparable across two configs."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


def config_diff(old: SalonConfig, new: SalonConfig) -> ConfigDiff:
    """What changed between ``old`` and ``new``, per agent, team, route and section."""
    diff = ConfigDiff()
    diff.added = [a for a in new.agents if a not in old.agents]
    diff.removed = [a for a in old.agents if a not in new.agents]
    diff.changed = [
        a for a in new.agents if a in old.agents and _dump(new.agents[a]) != _dump(old.agents[a])
    ]
    old_router, new_router = _dump(old.router), _dump(new.router)
    diff.routing = (
        [_dump(r) for r in old.routes] != [_dump(r) for r in new.routes]
        or old.select_agent != new.select_agent
        or old.default_agent != new.default_agent
        or _dump(old.routing) != _dump(new.routing)
        or {k: v for k, v in old_router.items() if k not in ROUTER_IDENTITY}
        != {k: v for k, v in new_router.items() if k not in ROUTER_IDENTITY}
    )
    diff.access = _dump(old.access) != _dump(new.access)
    diff.restart = [s for s in RESTART_SECTIONS if _dump(getattr(old, s)) != _dump(getattr(new, s))]
    if any(old_router.get(k) != new_router.get(k) for k in ROUTER_IDENTITY):
        diff.restart.append("router")
    return diff


class Reloadable(Protocol):
    """What a reload changes: the running gateway, as the reloader sees it."""

    @property
    def config(self) -> SalonConfig: ...

    @property
    def store(self) -> Store | None: ...

    async def compose(self, config: SalonConfig) -> SalonConfig:
        """``config`` plus the session agents still active."""
        ...

    async def apply_config(self, new: SalonConfig, diff: ConfigDiff) -> None:
        """Change the running gateway to ``new`` where it can change live."""
        ...


@dataclass
class ReloadResult:
    """What one reload did (or why it was refused)."""

    ok: bool
    error: str | None = None
    diff: ConfigDiff | None = None

    def as_json(self) -> str:
        body: dict[str, Any] = {"ok": self.ok, "at_ms": now_ms(), "error": self.error}
        if self.diff is not None:
            d = self.diff
            body.update(
                added=d.added,
                removed=d.removed,
                changed=d.changed,
                routing=d.routing,
                access=d.access,
                needs_restart=d.restart,
            )
        return json.dumps(body)


class Reloader:
    """Watches the config (file, SIGHUP) and applies changes to a running gateway."""

    def __init__(
        self,
        gateway: Reloadable,
        load: Callable[[], SalonConfig],
        *,
        watch: Path | None = None,
        poll_s: float = 1.0,
        debounce_s: float = 0.5,
    ) -> None:
        self.gateway = gateway
        self.load = load
        self.watch = watch
        self.poll_s = poll_s
        self.debounce_s = debounce_s
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._seen = self._stamp()

    def request(self) -> None:
        """Reload soon (SIGHUP, `salon reload`)."""
        self._wake.set()

    def _stamp(self) -> tuple[int, int] | None:
        if self.watch is None:
            return None
        try:
            stat = self.watch.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    async def run(self, handle: LoopHandle) -> None:
        """Wait for a change or a request, then apply it (a supervised loop)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            requested = self._wake.is_set()
            stamp = self._stamp()
            if not requested and stamp == self._seen:
                handle.healthy()
                continue
            # Debounce: an editor writes in several steps; wait until it settles.
            await asyncio.sleep(self.debounce_s)
            while (now := self._stamp()) != stamp:
                stamp = now
                await asyncio.sleep(self.debounce_s)
            self._wake.clear()
            self._seen = stamp
            await self.apply()
            handle.healthy()

    async def apply(self) -> ReloadResult:
        """Load, validate, diff and apply the config now."""
        async with self._lock:
            try:
                new = await self.gateway.compose(self.load())
            except SalonError as e:
                return await self._record(ReloadResult(False, error=str(e)))
            diff = config_diff(self.gateway.config, new)
            if diff.empty:
                return await self._record(ReloadResult(True, diff=diff))
            try:
                await self.gateway.apply_config(new, diff)
            except SalonError as e:
                log.exception("reload.failed")
                return await self._record(ReloadResult(False, error=str(e), diff=diff))
            return await self._record(ReloadResult(True, diff=diff))

    async def _record(self, result: ReloadResult) -> ReloadResult:
        CONFIG_RELOADS.labels(result="applied" if result.ok else "refused").inc()
        if result.ok:
            d = result.diff
            log.info(
                "reload.applied",
                added=d.added if d else [],
                removed=d.removed if d else [],
                changed=d.changed if d else [],
                needs_restart=d.restart if d else [],
            )
        else:
            log.warning("reload.refused", error=result.error)
        store = self.gateway.store
        if store is not None:
            with contextlib.suppress(SalonError):
                await store.kv.set(RELOAD_STATUS_KEY, result.as_json())
        return result
