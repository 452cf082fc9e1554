"""The tools of one turn, and the one seam every tool call goes through.

A backend (the ``openai`` one for its model, a ``python`` plugin directly) turns a
request into a :class:`ToolCall` with :meth:`TurnTools.call_for` and runs it with
:meth:`TurnTools.dispatch`, the single place where a call is checked (``checks``,
then: a recorded result reused on a re-run after a crash, else a person's approval
through :func:`salon.agents.approval.approve`), run by its provider, recorded and
counted. ``delegate`` goes through the same seam; its approval and exactly-once
record are the delegator's (an ``ApprovingDelegator``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from salon.agents.approval import Denied, approve
from salon.agents.approval import ToolCall as ApprovalCall
from salon.agents.tools import DELEGATE_TOOL_NAME, Delegator, call_delegate_tool
from salon.metrics import TOOL_CALL_SECONDS, TOOL_CALLS

_log = structlog.get_logger("salon.agents.toolbox")


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model sees it: a collision-free ``name`` and where it leads."""

    name: str
    server: str
    tool: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry."""
        params = dict(self.parameters) or {"type": "object", "properties": {}}
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }


@dataclass(frozen=True)
class ToolCall:
    """One call a turn makes: ``step`` is its place in the turn (the ledger's key)."""

    agent_id: str
    step: int
    name: str
    server: str  # "" for delegate
    tool: str
    arguments: Mapping[str, Any]
    raw: str | Mapping[str, Any] | None = None  # as the model sent them

    def arguments_json(self) -> str:
        """The arguments, canonical (sorted keys): what the ledger stores and compares."""
        return json.dumps(self.arguments, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class ToolResult:
    """What a call gave back. ``outcome``: ok, error, unavailable, timeout, denied, ..."""

    ok: bool
    text: str
    outcome: str = "ok"


class ToolProvider(Protocol):
    """The MCP tools an agent may use (the gateway's MCP hub implements it)."""

    def specs(self) -> Sequence[ToolSpec]:
        """The tools offered now (a server not started yet offers what it offered last)."""
        ...

    async def run(self, call: ToolCall) -> ToolResult:
        """Run the call; failures are results, never exceptions."""
        ...


class ToolLedger(Protocol):
    """A turn's recorded tool steps (the store implements it)."""

    async def recorded(self, step: int) -> tuple[str, str, bool, str] | None:
        """``(name, arguments_json, ok, text)`` of a step run before, if any."""
        ...

    async def record(self, step: int, name: str, arguments: str, ok: bool, text: str) -> None:
        """Keep a step's result (idempotent per step)."""
        ...


# An approval (or any policy) check: None lets the call run, a result refuses it.
ToolCheck = Callable[[ToolCall], Awaitable[ToolResult | None]]


def _error(text: str, outcome: str = "error") -> ToolResult:
    return ToolResult(False, f"[ERROR] {text}", outcome)


class TurnTools:
    """The tools one turn may use: its provider's MCP tools and ``delegate``."""

    def __init__(
        self,
        provider: ToolProvider | None,
        *,
        agent_id: str = "",
        delegator: Delegator | None = None,
        ledger: ToolLedger | None = None,
        checks: Sequence[ToolCheck] = (),
    ) -> None:
        self.provider = provider
        self.agent_id = agent_id
        self.delegator = delegator
        self.ledger = ledger
        self.checks = list(checks)
        self._step = 0

    def specs(self) -> list[ToolSpec]:
        """The MCP tools offered (``delegate`` is offered by the backend with its targets)."""
        return list(self.provider.specs()) if self.provider is not None else []

    def call_for(self, name: str, arguments: str | Mapping[str, Any] | None) -> ToolCall:
        """A call of the tool named ``name`` (model name, or ``server.tool``); numbered now,
        in the order calls are made, so a re-run numbers the same calls alike."""
        self._step += 1
        args: Any = arguments
        if arguments is None or isinstance(arguments, str):
            try:
                args = json.loads(arguments) if arguments and arguments.strip() else {}
            except ValueError:
                args = {"_unparsed": arguments}
        if not isinstance(args, Mapping):
            args = {"_unparsed": args}
        if name == DELEGATE_TOOL_NAME:
            return ToolCall(self.agent_id, self._step, name, "", name, dict(args), arguments)
        for spec in self.specs():
            if name in (spec.name, f"{spec.server}.{spec.tool}"):
                return ToolCall(self.agent_id, self._step, spec.name, spec.server, spec.tool, args)
        return ToolCall(self.agent_id, self._step, name, "?", name, dict(args), arguments)

    async def call(self, name: str, arguments: Mapping[str, Any] | str | None = None) -> ToolResult:
        """Make and dispatch one call (what ``python`` plugins use)."""
        return await self.dispatch(self.call_for(name, arguments))

    async def dispatch(self, call: ToolCall) -> ToolResult:
        """THE seam: check, reuse a recorded result, or run; record and count. Never raises
        (but on cancellation)."""
        began = time.monotonic()
        result = await self._dispatch(call)
        label = call.server or "salon"
        TOOL_CALLS.labels(server=label, tool=call.tool, outcome=result.outcome).inc()
        TOOL_CALL_SECONDS.labels(server=label, tool=call.tool).observe(time.monotonic() - began)
        return result

    async def _dispatch(self, call: ToolCall) -> ToolResult:
        if call.server == "?" and self.delegator is not None and not self.specs():
            outcome = await call_delegate_tool(self.delegator, call.name, call.raw)
            return ToolResult(outcome.ok, outcome.text, "unknown")
        if call.server == "?":
            known = ", ".join(s.name for s in self.specs()) or "none"
            return _error(f"unknown tool {call.name!r}; tools: {known}", "unknown")
        for check in self.checks:
            refused = await check(call)
            if refused is not None:
                return refused
        if not call.server:
            if self.delegator is None:
                return _error("this agent may not delegate", "refused")
            outcome = await call_delegate_tool(self.delegator, call.name, call.raw)
            return ToolResult(outcome.ok, outcome.text, "ok" if outcome.ok else "error")
        args_json = call.arguments_json()
        if self.ledger is not None:
            done = await self.ledger.recorded(call.step)
            if done is not None and done[:2] == (call.name, args_json):
                _log.info("tool.reused", agent=call.agent_id, step=call.step, tool=call.name)
                return ToolResult(done[2], done[3], "reused")
        if self.provider is None:
            return _error(f"no MCP tools for {call.name!r}", "unknown")
        # A person's OK first, where the agent's `approve:` asks for one (may wait long).
        asked = ApprovalCall(f"{call.server}.{call.tool}", dict(call.arguments))
        decision = await approve(asked)
        if isinstance(decision, Denied):
            return ToolResult(False, decision.tool_result(asked), "denied")
        result = await self.provider.run(call)
        # A call that never reached the server is not a step: a re-run tries it again.
        if self.ledger is not None and result.outcome != "unavailable":
            await self.ledger.record(call.step, call.name, args_json, result.ok, result.text)
        return result
