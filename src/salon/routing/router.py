"""Who answers a message: the routing chain, and the reason for each decision.

For each message, in this order, the first rule that decides wins:

0. a message from an agent (ours or a peer gateway's) that is ``hop_limit`` hops
   from a person goes to nobody: agents never talk to each other without end;
1. mentions of agents in the room (pill, link, user id, ``@label``, ``@localpart``);
2. a message from an agent that mentions no other agent goes to nobody
   (agents never answer each other unmentioned: no bot loops);
3. a room that belongs to a peer gateway's agent is that gateway's: nobody here;
4. the room's binding (an agent's own room, or a ``!new`` chat); a ``!new`` chat
   whose person has picked another agent since says so instead (stale chat);
5. declarative ``routes:``, first match in config order;
6. ``select_agent`` hooks, in config order;
7. with one candidate agent (those in the room, or all when that is unknown),
   that agent; with several, the AI router (an LLM when ``router.model`` is
   set, falling back to) the lexical scorer;
8. ``default_agent``;
9. nobody (the decision says whether the router itself was addressed).

The router is pure: it gets a :class:`MessageContext` and returns a
:class:`RouteDecision`; it knows no Matrix API and no store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    from salon.roster import Roster

__all__ = ["HOOK_TIMEOUT_S", "Reason", "RouteDecision", "Router", "RoutingRules"]

# An async hook that takes longer is skipped (a sync one cannot be interrupted).
HOOK_TIMEOUT_S = 5.0


class Reason(StrEnum):
    """Which rule of the chain decided."""

    HOP_LIMIT = "hop_limit"
    MENTION = "mention"
    PEER_ROOM = "peer_room"
    STALE_CHAT = "stale_chat"
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
    caller may then say how to reach an agent when nobody answers). ``chat_owner``:
    for a stale chat, the agent the chat belongs to.
    """

    agents: tuple[str, ...]
    reason: Reason
    detail: str = ""
    router_addressed: bool = False
    chat_owner: str | None = None


@dataclass(frozen=True)
class RoutingRules:
    """The configured links of the chain: routes, hooks (and how long one may take),
    and the agent that answers when nothing else picks one."""

    routes: Sequence[RouteRule] = ()
    hooks: Sequence[SelectAgentHook] = ()
    default_agent: str | None = None
    hook_timeout_s: float = HOOK_TIMEOUT_S


class Router:
    """The routing chain over a fixed set of agents, routes, hooks and AI router."""

    def __init__(
        self,
        agents: Sequence[AgentInfo],
        *,
        router_user_id: str,
        rules: RoutingRules | None = None,
        ai: AIRouter | None = None,
        hop_limit: int = 3,
        peer_rooms: Mapping[str, str] | None = None,
    ) -> None:
        rules = rules or RoutingRules()
        default_agent = rules.default_agent
        self.agents = tuple(agents)
        self.router_user_id = router_user_id
        self.routes = tuple(rules.routes)
        self.hooks = tuple(rules.hooks)
        self.ai = ai
        self.default_agent = default_agent
        self.hook_timeout_s = rules.hook_timeout_s
        self.hop_limit = hop_limit
        # Room alias → the peer agent (another gateway) whose room it is.
        self.peer_rooms = dict(peer_rooms or {})
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
    def from_config(cls, config: SalonConfig, roster: Roster) -> Router:
        """The router for ``config``; hooks are imported (ConfigError if one cannot be)."""
        hooks = [load_hook(e, key=f"select_agent.{i}") for i, e in enumerate(config.select_agent)]
        return cls(
            roster.hosted(),
            router_user_id=roster.router_user_id,
            rules=RoutingRules(
                routes=[RouteRule.from_config(rule) for rule in config.routes],
                hooks=hooks,
                default_agent=config.default_agent,
            ),
            ai=AIRouter.from_config(config.router) if config.router.model else None,
            hop_limit=config.routing.hop_limit,
            peer_rooms={m.room_alias: m.agent_id for m in roster.peers()},
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

        if ctx.sender_agent is not None and ctx.hop >= self.hop_limit:
            return decide((), Reason.HOP_LIMIT, f"hop {ctx.hop} of {self.hop_limit}")
        if mentions.agents:
            return decide(mentions.agents, Reason.MENTION, mentions.detail())
        if ctx.sender_agent is not None:
            return decide((), Reason.NOBODY, "agent sender, no agent mentioned")
        peer = next((self.peer_rooms[a] for a in ctx.room_aliases if a in self.peer_rooms), None)
        if peer is not None:
            return decide((), Reason.PEER_ROOM, f"room of {peer}")
        binding = ctx.binding
        if (
            binding is not None
            and binding.kind == "chat"
            and ctx.selected_agent
            and ctx.selected_agent != binding.agent_id
            and binding.agent_id in self._known
        ):
            # A `!new` chat belongs to its agent; the person has since picked another one.
            return RouteDecision(
                (),
                Reason.STALE_CHAT,
                f"chat of {binding.agent_id}",
                router_addressed=addressed,
                chat_owner=binding.agent_id,
            )
        by_binding = self._by_binding(binding)
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
