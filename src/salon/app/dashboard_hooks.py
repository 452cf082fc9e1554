"""What the dashboard reads of the running gateway beyond the API context's basics:
each agent's backend, model, team members and session end, and a reload it may ask for."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from salon.config.models import SalonConfig
from salon.gateway.reload import Reloader
from salon.store import Store


class _Configured(Protocol):
    @property
    def config(self) -> SalonConfig: ...


def agent_info(
    gateway: _Configured, store: Store
) -> Callable[[], Awaitable[dict[str, dict[str, Any]]]]:
    """Per agent, from the running config (as last reloaded) and the session agents."""

    async def info() -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for agent_id, agent in gateway.config.agents.items():
            backend = agent.backend
            row: dict[str, Any] = {
                "backend": backend.type,
                "model": getattr(backend, "model", None),
            }
            members = getattr(backend, "members", None)
            if members:
                row["members"] = list(members)
            rows[agent_id] = row
        for session in await store.session_agents.active():
            rows.setdefault(session.agent_id, {})["ends_at_ms"] = session.expires_at
        return rows

    return info


def reload_now(reloader: Reloader) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Reload the config now; what the reload did (as ``salon status`` shows it)."""

    async def apply() -> dict[str, Any]:
        result = await reloader.apply()
        return dict(json.loads(result.as_json()))

    return apply
