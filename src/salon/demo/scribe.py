"""A scribe: an offline agent that works through an MCP server's tools.

Shows a ``python`` backend calling MCP tools through the turn's
:func:`~salon.agents.context.current_tools` — the same tools, allow-list and
ledger an ``openai`` agent's model gets (each call is a step of the turn). The
demo config gives it the ``notebook`` server (:mod:`salon.demo.notebook_server`).
What it understands:

- ``write <text>`` (or ``note <text>``): write a note;
- ``read`` / ``notes``: read the notebook;
- ``forget <n>``: tear out note *n*;
- anything else: the tools it has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from salon.agents.backend import TurnRequest
from salon.agents.context import current_tools
from salon.demo.common import strip_mentions

_WRITE = re.compile(r"^\s*(?:write|note)\s+(?P<text>.+)$", re.IGNORECASE | re.DOTALL)
_READ = re.compile(r"^\s*(?:read|notes|read notes)\s*[.!?]?\s*$", re.IGNORECASE)
_FORGET = re.compile(r"^\s*forget\s+(?P<n>\d{1,4})\s*$", re.IGNORECASE)


class Scribe:
    """Keeps the notebook through the ``notebook`` MCP server."""

    def __init__(self, agent_id: str, options: Mapping[str, Any]) -> None:
        self.agent_id = agent_id
        self.server = str(options.get("server", "notebook"))

    async def __call__(self, request: TurnRequest) -> str:
        tools = current_tools()
        if tools is None or not tools.specs():
            return "I have no notebook right now (no MCP tools are configured for me)."
        text = strip_mentions(request.text)
        if m := _WRITE.match(text):
            call = ("write_note", {"text": m["text"]})
        elif _READ.match(text):
            call = ("read_notes", {})
        elif m := _FORGET.match(text):
            call = ("forget_note", {"number": int(m["n"])})
        else:
            names = ", ".join(f"{s.server}.{s.tool}" for s in tools.specs())
            return (
                "I keep a notebook through an MCP server. Say `write <text>`, `read` or "
                f"`forget <n>`. My tools: {names}."
            )
        result = await tools.call(f"{self.server}.{call[0]}", call[1])
        return result.text
