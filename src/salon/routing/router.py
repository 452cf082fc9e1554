"""Who answers a message: the routing chain, and the reason for each decision.

For each message, in this order, the first rule that decides wins:

1. mentions of agents in the room (pill, link, user id, ``@label``, ``@localpart``);
2. a message from one of our agents that mentions no other agent goes to nobody
   (agents never answer each other unmentioned: no bot loops);
3. the room's binding (an agent's own room, or a ``!new`` chat);
4. declarative ``routes:``, first match in config order;
5. ``select_agent`` hooks, in config order;
6. with one candidate agent (those in the room, or all when that is unknown),
   that agent; with several, the AI router (an LLM when ``router.model`` is
   set, falling back to) the lexical scorer;
7. ``default_agent``;
8. nobody (the decision says whether the router itself was addressed).

The router is pure: it gets a :class:`MessageContext` and returns a
:class:`RouteDecision`; it knows no Matrix API and no store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from salon.routing.ai import AIRouter
from salon.routing.context import AgentInfo, Binding, MessageContext
from salon.routing.hooks import SelectAgentHook, ask_hook, hook_name, load_hook
from salon.routing.lexical import LexicalScorer
from salon.routing.mentions import MentionFinder
from salon.routing.routes import RouteRule

if TYPE_CHECKING:
    from salon.config.models import SalonConfig

__all__ = ["HOOK_TIMEOUT_S", "Reason", "RouteDecision", "Router"]

# An async hook that takes longer is skipped (a sync one cannot be interrupted).
HOOK_TIMEOUT_S = 5.0


class Reason(StrEnum):
    """Which rule of the chain decided."""

    MENTION = "mention"
    AGENT_ROOM = "agent_room"
    CHAT_ROOM = "chat_room"
    ROUTE = "route"
    HOOK = "hook"
    AI_ROUTER = "ai_router"
    LEXICAL = "lexical"
    SOLE_AGENT = "sole_agent"
    DEFAULT = "default"
    NOBODY = "nobody"


@dataclass(frozen=True)
class RouteDecision:
    """Which agents answer, and why.

    ``detail`` says more: ``routes[2]``, ``hook pkg.mod:fn``, ``score 2.0 ('python',)``,
    the LLM's reason. ``router_addressed``: the router's user was mentioned (the
    caller may then say how to reach an agent when nobody answers).
    """

    agents: tuple[str, ...]
    reason: Reason
    detail: str = ""
    router_addressed: bool = False


class Router:
    """The routing chain over a fixed set of agents, routes, hooks and AI router."""

    def __init__(
        self,
        agents: Sequence[AgentInfo],
        *,
        router_user_id: str,
        routes: Sequence[RouteRule] = (),
        hooks: Sequence[SelectAgentHook] = (),
        ai: AIRouter | None = None,
        default_agent: str | None = None,
        hook_timeout_s: float = HOOK_TIMEOUT_S,
    ) -> None:
        self.agents = tuple(agents)
        self.router_user_id = router_user_id
        self.routes = tuple(routes)
        self.hooks = tuple(hooks)
        self.ai = ai
        self.default_agent = default_agent
        self.hook_timeout_s = hook_timeout_s
        self._known = {a.agent_id for a in self.agents}
        self._mentions = MentionFinder(self.agents, router_user_id=router_user_id)
        self._lexical = LexicalScorer(self.agents)
        self.log = structlog.get_logger("salon.routing")
        for i, rule in enumerate(self.routes):
            if rule.agent not in self._known:
                raise ValueError(f"routes[{i}]: unknown agent {rule.agent!r}")
        if default_agent is not None and default_agent not in self._known:
            raise ValueError(f"default_agent: unknown agent {default_agent!r}")

    @classmethod
    def from_config(cls, config: SalonConfig, server_name: str) -> Router:
        """The router for ``config``; hooks are imported (ConfigError if one cannot be)."""
        agents = [
            AgentInfo(
                agent_id=agent_id,
                user_id=config.agent_user_id(agent_id, server_name),
                label=agent.display_label,
                localpart=config.agent_localpart(agent_id),
                description=agent.description,
            )
            for agent_id, agent in config.agents.items()
        ]
        hooks = [load_hook(e, key=f"select_agent.{i}") for i, e in enumerate(config.select_agent)]
        return cls(
            agents,
            router_user_id=config.router_user_id(server_name),
            routes=[RouteRule.from_config(rule) for rule in config.routes],
            hooks=hooks,
            ai=AIRouter.from_config(config.router) if config.router.model else None,
            default_agent=config.default_agent,
        )

    async def aclose(self) -> None:
        """Release the AI router's connections, if there is one."""
        if self.ai is not None:
            await self.ai.aclose()

    async def route(self, ctx: MessageContext) -> RouteDecision:
        """Run the chain for ``ctx``; never raises (hooks and the AI router are guarded)."""
        mentions = self._mentions.find(ctx)
        addressed = mentions.router_addressed

        def decide(agents: Sequence[str], reason: Reason, detail: str = "") -> RouteDecision:
            return RouteDecision(tuple(agents), reason, detail, router_addressed=addressed)

        if mentions.agents:
            return decide(mentions.agents, Reason.MENTION, mentions.detail())
        if ctx.sender_agent is not None:
            return decide((), Reason.NOBODY, "agent sender, no agent mentioned")
        by_binding = self._by_binding(ctx.binding)
        if by_binding is not None:
            return decide(*by_binding)
        for i, rule in enumerate(self.routes):
            if rule.match.matches(ctx):
                return decide((rule.agent,), Reason.ROUTE, f"routes[{i}]")
        for hook in self.hooks:
            picked = await ask_hook(
                hook, ctx, self.agents, timeout_s=self.hook_timeout_s, log=self.log
            )
            if picked is not None:
                return decide((picked,), Reason.HOOK, f"hook {hook_name(hook)}")
        candidates = self._candidates(ctx)
        if len(candidates) == 1:
            return decide((candidates[0].agent_id,), Reason.SOLE_AGENT)
        if len(candidates) > 1:
            if self.ai is not None:
                choice = await self.ai.choose(ctx, candidates)
                if choice is not None:
                    return decide((choice.agent_id,), Reason.AI_ROUTER, choice.reason)
            best = self._lexical.best(ctx.body, candidates)
            if best is not None:
                return decide((best.agent_id,), Reason.LEXICAL, best.detail())
        if self.default_agent is not None:
            return decide((self.default_agent,), Reason.DEFAULT)
        return decide((), Reason.NOBODY)

    def _by_binding(self, binding: Binding | None) -> tuple[tuple[str], Reason, str] | None:
        if binding is None:
            return None
        if binding.agent_id not in self._known:
            self.log.warning("routing.binding_unknown_agent", agent=binding.agent_id)
            return None
        reason = Reason.AGENT_ROOM if binding.kind == "agent" else Reason.CHAT_ROOM
        return (binding.agent_id,), reason, f"{binding.kind} room of {binding.agent_id}"

    def _candidates(self, ctx: MessageContext) -> tuple[AgentInfo, ...]:
        """The agents that could answer: those in the room, or all if that is unknown."""
        if not ctx.agents_in_room:
            return self.agents
        return tuple(a for a in self.agents if a.agent_id in ctx.agents_in_room)
