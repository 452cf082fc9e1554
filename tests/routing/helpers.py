"""Shared agents and a context builder for the routing tests."""

from __future__ import annotations

from typing import Any

from salon.routing.context import AgentInfo, MessageContext

SERVER = "localhost"
ROUTER_ID = "@salon:localhost"


def agent(agent_id: str, label: str, description: str = "") -> AgentInfo:
    """An agent with the default naming (``@salon_<id>:localhost``)."""
    return AgentInfo(
        agent_id, f"@salon_{agent_id}:{SERVER}", label, f"salon_{agent_id}", description
    )


CODER = agent("coder", "Coder", "Writes and reviews Python code and scripts")
RESEARCHER = agent("researcher", "Researcher", "Searches the web and summarises papers")
HOME = agent("home", "Home", "Controls the lights, heating and other home automation")
AGENTS = (CODER, RESEARCHER, HOME)
ALL_IN_ROOM = frozenset(a.agent_id for a in AGENTS)


def ctx(body: str = "hello", **fields: Any) -> MessageContext:
    """A message from ``@alice:localhost`` in ``!room:x`` with every agent in the room."""
    fields.setdefault("room_id", "!room")
    fields.setdefault("sender", "@alice:localhost")
    fields.setdefault("agents_in_room", ALL_IN_ROOM)
    return MessageContext(body=body, **fields)
