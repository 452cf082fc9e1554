"""The current agent (and its delegator), visible to plugins and tools while a turn runs.

Each turn runs in its own asyncio task, and a task owns a copy of the context,
so concurrent turns of different agents never see each other's profile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar

from salon.agents.profile import AgentProfile
from salon.agents.toolbox import TurnTools
from salon.agents.tools import Delegator

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


_DELEGATOR: ContextVar[Delegator | None] = ContextVar("salon_current_delegator", default=None)


def current_delegator() -> Delegator | None:
    """How the running turn's agent may delegate; None when it may not (or outside a turn).

    The gateway sets it around a turn; the ``openai`` backend offers it to the
    model as the ``delegate`` tool, and ``python`` plugins call it directly::

        delegator = current_delegator()
        if delegator is not None:
            outcome = await delegator.delegate("coder", "write the parser")
    """
    return _DELEGATOR.get()


@contextmanager
def delegator_context(delegator: Delegator | None) -> Iterator[Delegator | None]:
    """Make ``delegator`` the current delegator for the block (None: no delegation)."""
    token = _DELEGATOR.set(delegator)
    try:
        yield delegator
    finally:
        _DELEGATOR.reset(token)


Lend = Callable[[], AbstractAsyncContextManager[None]]
_LEND: ContextVar[Lend | None] = ContextVar("salon_turn_lend", default=None)


@asynccontextmanager
async def waiting_on_others() -> AsyncIterator[None]:
    """Around a wait on another agent's work (a delegation's outcome): the running
    turn gives its slots back for the wait and takes them again after it, so turns
    waiting on an agent never starve that agent's own turns. Outside a turn: nothing."""
    lend = _LEND.get()
    if lend is None:
        yield
        return
    async with lend():
        yield


@contextmanager
def lending_context(lend: Lend | None) -> Iterator[None]:
    """How the turn running in this context lends its slots (the turn runner sets it)."""
    token = _LEND.set(lend)
    try:
        yield
    finally:
        _LEND.reset(token)


_TOOLS: ContextVar[TurnTools | None] = ContextVar("salon_turn_tools", default=None)


def current_tools() -> TurnTools | None:
    """The running turn's tools (MCP tools by the agent's ``mcp:`` list, and ``delegate``);
    None outside a turn. ``python`` plugins call them like the model would::

        tools = current_tools()
        if tools is not None:
            result = await tools.call("notes.add", {"text": "buy milk"})
            # result.ok, result.text; every call is a ledgered step of the turn
    """
    return _TOOLS.get()


@contextmanager
def tools_context(tools: TurnTools | None) -> Iterator[TurnTools | None]:
    """Make ``tools`` the running turn's tools for the block."""
    token = _TOOLS.set(tools)
    try:
        yield tools
    finally:
        _TOOLS.reset(token)
