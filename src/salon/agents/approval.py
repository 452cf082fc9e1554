"""A person's OK before a tool call: the one hook every tool call goes through.

A tool dispatcher (``delegate`` today, MCP tools next) asks before it runs a call::

    decision = await approve(ToolCall("github.create_issue", arguments))
    if isinstance(decision, Denied):
        return decision.tool_result(call)  # what the model is told instead

Outside a turn, or for an agent whose calls need nobody's OK, :func:`approve`
answers :class:`Approved` at once. The gateway sets the turn's :class:`Approver`
(which asks in the room and waits, giving the turn's slots back meanwhile); nothing
here knows about Matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from salon.agents.tools import DELEGATE_TOOL_NAME, DelegationOutcome, Delegator


@dataclass(frozen=True)
class ToolCall:
    """One call a model or plugin wants to make: ``tool`` is ``delegate`` or
    ``server.tool``; ``arguments`` as the tool gets them (JSON-ready)."""

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Approved:
    """The call may run; ``by`` is who approved it (None: it needed nobody's OK)."""

    by: str | None = None


@dataclass(frozen=True)
class Denied:
    """The call must not run: ``reason`` says why (denied by whom, timed out, …)."""

    reason: str

    def tool_result(self, call: ToolCall) -> str:
        """What the model gets back instead of the tool's result."""
        return f"[DENIED] {call.tool} was not run: {self.reason}"


Decision = Approved | Denied


class Approver(Protocol):
    """Decides the calls of one turn (the gateway implements it)."""

    async def approve(self, call: ToolCall) -> Decision:
        """Approved or Denied; may wait for a person for a long time."""
        ...


_APPROVER: ContextVar[Approver | None] = ContextVar("salon_turn_approver", default=None)


async def approve(call: ToolCall) -> Decision:
    """Whether ``call`` may run now, as the running turn's approver decides (it may
    wait for a person). No approver (outside a turn): Approved."""
    approver = _APPROVER.get()
    if approver is None:
        return Approved()
    return await approver.approve(call)


@contextmanager
def approver_context(approver: Approver | None) -> Iterator[Approver | None]:
    """Make ``approver`` decide the tool calls made in the block (the turn runner sets it)."""
    token = _APPROVER.set(approver)
    try:
        yield approver
    finally:
        _APPROVER.reset(token)


def needs_approval(patterns: Iterable[str], tool: str) -> bool:
    """Whether ``tool`` matches one of ``patterns``: an exact name (``delegate``,
    ``server.tool``), ``server.*`` for every tool of a server, or ``*`` for all."""
    for pattern in patterns:
        if pattern in ("*", tool):
            return True
        if pattern.endswith(".*") and tool.startswith(pattern[:-1]):
            return True
    return False


class ApprovingDelegator:
    """A :class:`Delegator` whose every delegation is a ``delegate`` tool call that
    needs the turn approver's OK first (for the model's tool and plugins alike)."""

    def __init__(self, inner: Delegator) -> None:
        self.inner = inner

    def targets(self) -> Sequence[tuple[str, str]]:
        """The inner delegator's targets."""
        return self.inner.targets()

    async def delegate(
        self, agent: str, task: str, context: str | None = None
    ) -> DelegationOutcome:
        """Ask first; delegate only when approved (a denial is an ``ok=False`` outcome)."""
        arguments: dict[str, Any] = {"agent": agent, "task": task}
        if context:
            arguments["context"] = context
        call = ToolCall(DELEGATE_TOOL_NAME, arguments)
        decision = await approve(call)
        if isinstance(decision, Denied):
            return DelegationOutcome(False, decision.tool_result(call))
        return await self.inner.delegate(agent, task, context)
