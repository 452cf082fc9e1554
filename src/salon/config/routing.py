"""Who may talk to agents and which agent a message goes to: access, router, routes."""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from salon.config.base import (
    ConfigModel,
    ConfigProblems,
    HttpUrl,
    Localpart,
    PositiveFloat,
    UserGlob,
    UserIdStr,
    with_key_env_default,
)
from salon.config.deployment import IdentityCredentials


class AccessConfig(ConfigModel):
    """Who may talk to the agents. Fail closed: without ``allowed_users`` only the
    ``admins`` may; ``@*:server`` (or any glob) opens it up and must be written."""

    allowed_users: list[UserGlob] | None = None
    admins: list[UserIdStr] = Field(default_factory=list)

    def allowed_patterns(self) -> list[str]:
        """Glob patterns of allowed senders besides the admins (none by default)."""
        return list(self.allowed_users or [])

    def is_allowed(self, user_id: str) -> bool:
        """Whether ``user_id`` may talk to agents (admins always may)."""
        if user_id in self.admins:
            return True
        return any(fnmatch.fnmatchcase(user_id, p) for p in self.allowed_patterns())

    def is_admin(self, user_id: str) -> bool:
        """Whether ``user_id`` is listed as an admin."""
        return user_id in self.admins

    def describe(self) -> str:
        """Who may reach the agents, in one line (start-up log, `salon status`)."""
        admins, patterns = ", ".join(self.admins), ", ".join(self.allowed_patterns())
        if not patterns:
            if not admins:
                return "nobody (set access.admins or access.allowed_users)"
            return f"admins only ({admins})"
        return f"admins ({admins}) and {patterns}" if admins else patterns


class RouterConfig(ConfigModel):
    """The gateway's own Matrix user, which answers commands."""

    localpart: Localpart = "salon"
    display_name: str = "Salon"
    # The AI router: when ``model`` is set, an OpenAI-compatible endpoint picks the agent
    # for messages nothing else decided; otherwise an offline lexical scorer does.
    # An empty model (``${ROUTER_MODEL:-}``) counts as unset.
    model: str | None = None
    base_url: HttpUrl | None = None
    # Unset: OPENAI_API_KEY only for OpenAI's own URL; another endpoint gets no key.
    api_key_env: str | None = None
    timeout_s: PositiveFloat = 10
    matrix: IdentityCredentials | None = None

    @model_validator(mode="before")
    @classmethod
    def _key_only_for_openai(cls, data: Any) -> Any:
        return with_key_env_default(data, None)

    @model_validator(mode="after")
    def _base_url_with_model(self) -> RouterConfig:
        if self.model and self.base_url is None:
            msg = "required when router.model is set (e.g. https://api.openai.com/v1)"
            raise ConfigProblems([(("base_url",), msg)])
        return self


class RoutingConfig(ConfigModel):
    """Rules of the routing chain that are not per route."""

    # Agent-to-agent messages (local or peer agents) are followed at most this many hops,
    # so two bots cannot keep answering each other.
    hop_limit: Annotated[int, Field(ge=1, le=15)] = 3


ROUTE_MATCH_KEYS = ("room", "thread", "user", "server", "platform")


def _room_ref(value: str) -> str:
    if not value.startswith(("!", "#")) or len(value) < 2:
        raise ValueError(f"{value!r} is not a room id ('!…') or alias ('#…:server')")
    return value


def _thread_ref(value: str) -> str:
    if value != "*" and (not value.startswith("$") or len(value) < 2):
        raise ValueError(f"{value!r} is not a thread root event id ('$…') or '*' (any thread)")
    return value


class RouteMatchConfig(ConfigModel):
    """What a route matches; every key given must match (globs for ``user`` and ``server``)."""

    room: Annotated[str, AfterValidator(_room_ref)] | None = None
    thread: Annotated[str, AfterValidator(_thread_ref)] | None = None
    user: UserGlob | None = None
    server: Annotated[str | None, Field(min_length=1)] = None
    platform: Annotated[str | None, Field(min_length=1)] = None

    @model_validator(mode="after")
    def _not_empty(self) -> RouteMatchConfig:
        if all(getattr(self, key) is None for key in ROUTE_MATCH_KEYS):
            msg = f"give at least one of {', '.join(ROUTE_MATCH_KEYS)}"
            raise ConfigProblems([((), msg)])
        return self


class RouteConfig(ConfigModel):
    """A declarative route: messages that ``match`` go to ``agent`` (first match wins)."""

    match: RouteMatchConfig
    agent: str
