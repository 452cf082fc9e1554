"""The tools of one turn, as the runner hands them to the backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from salon.agents.toolbox import ToolCheck, ToolProvider, TurnTools
from salon.agents.tools import Delegator
from salon.store import Store
from salon.turns.spec import TurnSpec


class _Runner(Protocol):
    store: Store
    tools_for: Callable[[TurnSpec], Awaitable[ToolProvider | None]] | None
    tool_checks: list[ToolCheck]


async def turn_tools(runner: _Runner, spec: TurnSpec, delegator: Delegator | None) -> TurnTools:
    """The turn's tools (its agent's MCP tools and ``delegate``): every call goes through
    :meth:`TurnTools.dispatch`, the runner's ``tool_checks`` first, and every MCP call is
    a step of this turn in the ledger, reused when the turn runs again after a crash."""
    provider = await runner.tools_for(spec) if runner.tools_for is not None else None
    return TurnTools(
        provider,
        agent_id=spec.agent_id,
        delegator=delegator,
        ledger=runner.store.tool_calls.for_turn(spec.turn_id, spec.agent_id),
        checks=runner.tool_checks,
    )
