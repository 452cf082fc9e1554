"""The current agent, visible to plugins and tools while a turn runs.

Each turn runs in its own asyncio task, and a task owns a copy of the context,
so concurrent turns of different agents never see each other's profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from salon.agents.profile import AgentProfile

_CURRENT: ContextVar[AgentProfile | None] = ContextVar("salon_current_agent", default=None)


def current_agent() -> AgentProfile:
    """The profile of the agent whose turn is running; RuntimeError outside a turn."""
    profile = _CURRENT.get()
    if profile is None:
        raise RuntimeError("no agent turn is running in this context")
    return profile


@contextmanager
def agent_context(profile: AgentProfile) -> Iterator[AgentProfile]:
    """Make ``profile`` the current agent for the block."""
    token = _CURRENT.set(profile)
    try:
        yield profile
    finally:
        _CURRENT.reset(token)
