"""``select_agent`` hooks: plugins that may pick the agent for a message.

Config names them as entry points, asked in order::

    select_agent: ["mypkg.routing:pick"]

A hook is called as ``hook(context, agents)`` with the
:class:`~salon.routing.context.MessageContext` and the tuple of
:class:`~salon.routing.context.AgentInfo`, and returns an agent id or ``None``
(no opinion). It may be a plain or an ``async`` function. A hook never breaks
routing: one that raises, times out or names an unknown agent is logged and
skipped.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from salon._exceptions import ConfigError
from salon.config.loader import resolve_entry_point
from salon.routing.context import AgentInfo, MessageContext

__all__ = ["NamedHook", "SelectAgentHook", "ask_hook", "hook_name", "load_hook"]

SelectAgentHook = Callable[
    [MessageContext, tuple[AgentInfo, ...]], "str | Awaitable[str | None] | None"
]


@dataclass(frozen=True)
class NamedHook:
    """A hook with the name it is reported under (its entry point)."""

    name: str
    fn: SelectAgentHook

    def __call__(
        self, ctx: MessageContext, agents: tuple[AgentInfo, ...]
    ) -> str | Awaitable[str | None] | None:
        return self.fn(ctx, agents)


def hook_name(hook: SelectAgentHook) -> str:
    """``pkg.mod:function`` for a hook (its entry point when loaded from config)."""
    if isinstance(hook, NamedHook):
        return hook.name
    module = getattr(hook, "__module__", None) or "?"
    name = getattr(hook, "__qualname__", None) or type(hook).__qualname__
    return f"{module}:{name}"


def load_hook(entry: str, *, key: str = "select_agent") -> NamedHook:
    """Import the hook ``entry`` names; ConfigError naming ``key`` if that fails."""
    try:
        fn = resolve_entry_point(entry)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}", path=key) from exc
    if not callable(fn):
        raise ConfigError(f"{key}: {entry!r} is not callable", path=key)
    return NamedHook(entry, fn)


async def ask_hook(
    hook: SelectAgentHook,
    ctx: MessageContext,
    agents: tuple[AgentInfo, ...],
    *,
    timeout_s: float,
    log: Any = None,
) -> str | None:
    """The known agent id ``hook`` picks for ``ctx``, or None; never raises (but cancellation)."""
    log = log or structlog.get_logger("salon.routing")
    name = hook_name(hook)
    try:
        answer: Any = hook(ctx, agents)
        if inspect.isawaitable(answer):
            answer = await asyncio.wait_for(answer, timeout_s)
    except TimeoutError:
        log.warning("routing.hook_timeout", hook=name, timeout_s=timeout_s)
        return None
    except Exception as exc:
        log.warning("routing.hook_failed", hook=name, error=f"{type(exc).__name__}: {exc}")
        return None
    if answer is None:
        return None
    if not isinstance(answer, str) or answer not in {a.agent_id for a in agents}:
        log.warning("routing.hook_unknown_agent", hook=name, answer=repr(answer)[:100])
        return None
    return answer
