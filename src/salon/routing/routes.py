"""Declarative routes: ``match: {room, thread, user, server, platform}`` → agent.

Every key a rule gives must match; the first matching rule (in config order)
wins. ``room`` is a room id or an alias (compared with the room's known
aliases); ``thread`` is a thread root event id, or ``"*"`` for any thread;
``user`` and ``server`` are globs (``@*:example.org``, ``*.example.org``);
``platform`` is compared exactly (``matrix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from salon.config.models import RouteConfig
from salon.routing.context import MessageContext

__all__ = ["RouteMatch", "RouteRule"]


@dataclass(frozen=True)
class RouteMatch:
    """The conditions of a route; ``None`` means "any"."""

    room: str | None = None
    thread: str | None = None
    user: str | None = None
    server: str | None = None
    platform: str | None = None

    def matches(self, ctx: MessageContext) -> bool:
        """Whether every given condition holds for ``ctx``."""
        if self.room is not None and self.room != ctx.room_id and self.room not in ctx.room_aliases:
            return False
        if self.thread is not None:
            if ctx.thread_root is None:
                return False
            if self.thread != "*" and self.thread != ctx.thread_root:
                return False
        if self.user is not None and not fnmatchcase(ctx.sender, self.user):
            return False
        # Server names are DNS names: compared without regard to case.
        if self.server is not None and not fnmatchcase(ctx.server.lower(), self.server.lower()):
            return False
        return self.platform is None or self.platform == ctx.platform


@dataclass(frozen=True)
class RouteRule:
    """Messages that ``match`` go to ``agent``."""

    match: RouteMatch
    agent: str

    @classmethod
    def from_config(cls, config: RouteConfig) -> RouteRule:
        """The rule for one entry of ``routes:``."""
        m = config.match
        match = RouteMatch(m.room, m.thread, m.user, m.server, m.platform)
        return cls(match=match, agent=config.agent)
