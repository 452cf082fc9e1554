"""An agent at run time: its identity-free persona and backend."""

from __future__ import annotations

import structlog

from salon.agents.backend import Backend, TurnRequest
from salon.ids import AgentId


class AgentRuntime:
    """Runs turns for one agent through its backend."""

    def __init__(self, agent_id: AgentId, label: str, backend: Backend) -> None:
        self.agent_id = agent_id
        self.label = label
        self.backend = backend
        self.log = structlog.get_logger(f"salon.agent.{agent_id}")

    async def reply(self, request: TurnRequest) -> str:
        """The whole reply to a turn (backend chunks joined)."""
        parts = [chunk async for chunk in self.backend.stream(request)]
        return "".join(parts)
