"""A `python` agent for the MCP crash test: calls a tool, then kills its own gateway once."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from salon.agents.backend import TurnRequest
from salon.agents.context import current_tools


def write_then_crash(
    agent_id: str, options: Mapping[str, Any]
) -> Callable[[TurnRequest], Awaitable[str]]:
    """Writes the message into the notebook; the first time, dies right after (kill -9)."""
    marker = Path(str(options["marker"]))

    async def reply(request: TurnRequest) -> str:
        tools = current_tools()
        assert tools is not None
        result = await tools.call("notebook.write_note", {"text": request.text})
        if _first_time(marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return result.text

    return reply


def _first_time(marker: Path) -> bool:
    if marker.exists():
        return False
    marker.write_text("crashed once")
    return True
