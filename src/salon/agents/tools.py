"""Tools an agent may use during a turn; for now one: ``delegate``.

The gateway decides who may delegate to whom and how a delegation travels;
this module only defines what a backend sees of it — a :class:`Delegator`
(set for the turn with :func:`salon.agents.context.delegator_context`) and the
OpenAI function-calling schema of the ``delegate`` tool. Nothing here knows
about Matrix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

DELEGATE_TOOL_NAME = "delegate"

_log = structlog.get_logger("salon.agents.tools")


@dataclass(frozen=True)
class DelegationOutcome:
    """How a delegation ended.

    ``text`` is the target's result when ``ok``, otherwise a short error such as
    ``[OFFLINE] coder``, ``[TIMEOUT] coder`` or ``[REJECTED] hop limit``. Either
    way it is what the delegating model gets back as the tool result.
    """

    ok: bool
    text: str


class Delegator(Protocol):
    """Delegation as the current agent may use it (the gateway implements it)."""

    def targets(self) -> Sequence[tuple[str, str]]:
        """``(agent_id, one-line description)`` of every agent this agent may delegate to."""
        ...

    async def delegate(
        self, agent: str, task: str, context: str | None = None
    ) -> DelegationOutcome:
        """Hand ``task`` to ``agent`` and wait for the outcome.

        Failures (offline, timeout, rejected, not allowed) are outcomes with
        ``ok=False``, not exceptions.
        """
        ...


def delegate_tool_schema(targets: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for ``delegate(agent, task, context?)``.

    ``agent`` is an enum of the target ids; the description lists each target
    with its description so the model knows whom to ask for what.
    """
    ids = [agent for agent, _ in targets]
    lines = [f"- {agent}: {desc}" if desc.strip() else f"- {agent}" for agent, desc in targets]
    description = (
        "Delegate a task to another agent and wait for its result, which is returned "
        "as this tool's result. Use it when another agent is better suited for (part of) "
        "the request, then answer the user using the result. Agents you can delegate to:\n"
        + "\n".join(lines)
    )
    return {
        "type": "function",
        "function": {
            "name": DELEGATE_TOOL_NAME,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {
                    "agent": {
                        "type": "string",
                        "enum": ids,
                        "description": "The id of the agent to delegate to.",
                    },
                    "task": {
                        "type": "string",
                        "description": "What the agent should do, self-contained and specific.",
                    },
                    "context": {
                        "type": "string",
                        "description": "Optional background: facts, earlier results.",
                    },
                },
                "required": ["agent", "task"],
                "additionalProperties": False,
            },
        },
    }


def _error(text: str) -> DelegationOutcome:
    return DelegationOutcome(False, f"[ERROR] {text}")


def parse_delegate_arguments(
    arguments: str | Mapping[str, Any] | None, targets: Sequence[tuple[str, str]]
) -> tuple[str, str, str | None] | DelegationOutcome:
    """``(agent, task, context)`` from a model's tool-call arguments, or an error outcome.

    The error outcome's text tells the model what was wrong so it can try again.
    """
    ids = [agent for agent, _ in targets]
    expected = 'expected {"agent": <one of ' + ", ".join(ids) + '>, "task": "<text>"}'
    if arguments is None or isinstance(arguments, str):
        try:
            args: Any = json.loads(arguments) if arguments and arguments.strip() else {}
        except ValueError as exc:
            return _error(
                f"the arguments of {DELEGATE_TOOL_NAME} are not valid JSON ({exc}); {expected}"
            )
    else:
        args = arguments
    if not isinstance(args, Mapping):
        return _error(f"the arguments of {DELEGATE_TOOL_NAME} must be a JSON object; {expected}")
    agent, task, context = args.get("agent"), args.get("task"), args.get("context")
    if not isinstance(agent, str) or not agent.strip():
        return _error(f"missing 'agent'; {expected}")
    agent = agent.strip()
    if agent not in ids:
        known = ", ".join(ids) or "none"
        return _error(f"unknown agent {agent!r}; you can delegate to: {known}")
    if not isinstance(task, str) or not task.strip():
        return _error(f"missing 'task'; {expected}")
    if context is not None and not isinstance(context, str):
        context = json.dumps(context, ensure_ascii=False)
    return agent, task, context or None


async def call_delegate_tool(
    delegator: Delegator,
    name: str,
    arguments: str | Mapping[str, Any] | None,
    *,
    targets: Sequence[tuple[str, str]] | None = None,
) -> DelegationOutcome:
    """Run one tool call a model made; never raises (except on cancellation).

    A wrong tool name, bad arguments, an agent not among ``targets`` (default:
    ``delegator.targets()``) or an exception from the delegator become an
    ``ok=False`` outcome whose text explains the problem to the model.
    """
    if name != DELEGATE_TOOL_NAME:
        return _error(f"unknown tool {name!r}; the only tool is {DELEGATE_TOOL_NAME!r}")
    if targets is None:
        targets = delegator.targets()
    parsed = parse_delegate_arguments(arguments, targets)
    if isinstance(parsed, DelegationOutcome):
        return parsed
    agent, task, context = parsed
    try:
        return await delegator.delegate(agent, task, context)
    except Exception as exc:
        _log.exception("delegation failed", target=agent)
        return _error(f"delegation to {agent} failed: {type(exc).__name__}: {exc}")
