"""Who answers a message: mentions, bindings, routes, hooks, the AI router, defaults.

Pure logic: :class:`Router` takes a :class:`MessageContext` and returns a
:class:`RouteDecision`; nothing here talks to Matrix or the store.
"""

from salon.routing.context import AgentInfo, Binding, MessageContext
from salon.routing.router import Reason, RouteDecision, Router
from salon.routing.routes import RouteMatch, RouteRule

__all__ = [
    "AgentInfo",
    "Binding",
    "MessageContext",
    "Reason",
    "RouteDecision",
    "RouteMatch",
    "RouteRule",
    "Router",
]
