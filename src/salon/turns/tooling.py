"""What a turn's backend gets to act with: its delegator, approver and tools."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from salon.agents.approval import Approver, ApprovingDelegator
from salon.agents.attachments import AttachmentWire
from salon.agents.context import tools_context
from salon.agents.reply_files import Outbox
from salon.agents.toolbox import ToolProvider, TurnTools
from salon.agents.tools import Delegator
from salon.store import Store
from salon.turns.backend_context import backend_context
from salon.turns.spec import TurnSpec

ToolsFor = Callable[[TurnSpec], Awaitable[ToolProvider | None]]


class _Runner(Protocol):
    store: Store
    wire: AttachmentWire
    delegator_for: Callable[[TurnSpec], Awaitable[Delegator | None]] | None
    approver_for: Callable[[TurnSpec], Approver | None] | None
    tools_for: ToolsFor | None


async def turn_context(
    runner: _Runner, spec: TurnSpec
) -> contextlib.AbstractContextManager[Outbox]:
    """The turn's backend context (see :func:`backend_context`) with its tools: every
    call goes through :meth:`TurnTools.dispatch` (a person's approval first, where the
    agent's ``approve:`` asks for one), and every MCP call is a step of this turn in the
    ledger, reused when the turn runs again after a crash."""
    delegator = await runner.delegator_for(spec) if runner.delegator_for else None
    approver = runner.approver_for(spec) if runner.approver_for else None
    provider = await runner.tools_for(spec) if runner.tools_for is not None else None
    tools = TurnTools(
        provider,
        agent_id=spec.agent_id,
        delegator=None if delegator is None else ApprovingDelegator(delegator),
        ledger=runner.store.tool_calls.for_turn(spec.turn_id, spec.agent_id),
    )
    return _both(delegator, approver, runner.wire, tools)


@contextlib.contextmanager
def _both(
    delegator: Delegator | None, approver: Approver | None, wire: AttachmentWire, tools: TurnTools
) -> Iterator[Outbox]:
    with backend_context(delegator, approver, wire) as box, tools_context(tools):
        yield box
