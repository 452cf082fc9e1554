"""``select_agent`` hooks for the tests (entry ``tests.routing.sample_hooks:<name>``)."""

from __future__ import annotations

import asyncio

from salon.routing.context import AgentInfo, MessageContext

NOT_CALLABLE = 42


def pick_coder(ctx: MessageContext, agents: tuple[AgentInfo, ...]) -> str | None:
    """Coder for messages that say "bug", else no opinion."""
    return "coder" if "bug" in ctx.body else None


async def pick_by_server(ctx: MessageContext, agents: tuple[AgentInfo, ...]) -> str | None:
    """Researcher for senders from example.org (async)."""
    await asyncio.sleep(0)
    return "researcher" if ctx.server == "example.org" else None


def always_home(ctx: MessageContext, agents: tuple[AgentInfo, ...]) -> str:
    """Always the home agent."""
    return "home"


def explode(ctx: MessageContext, agents: tuple[AgentInfo, ...]) -> str:
    """A broken plugin."""
    raise RuntimeError("plugin bug")


def unknown(ctx: MessageContext, agents: tuple[AgentInfo, ...]) -> str:
    """Names an agent that does not exist."""
    return "ghost"


def not_a_string(ctx: MessageContext, agents: tuple[AgentInfo, ...]) -> object:
    """Returns something that is not an agent id."""
    return 7


async def slow(ctx: MessageContext, agents: tuple[AgentInfo, ...]) -> str:
    """Takes far longer than the hook time limit."""
    await asyncio.sleep(30)
    return "coder"


class Picker:
    """A callable object as a hook."""

    def __call__(self, ctx: MessageContext, agents: tuple[AgentInfo, ...]) -> str:
        return agents[-1].agent_id


picker = Picker()
