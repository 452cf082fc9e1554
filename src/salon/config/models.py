"""The ``salon.yaml`` schema: frozen pydantic models that reject unknown keys.

Cross-field checks raise :class:`ConfigProblems`, which carries a key path per
problem (relative to the model that raised it) so the loader can point at the
offending line instead of at the top of the section.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from salon.ids import AgentId, RoomAlias, UserId, localpart_of_user

AGENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

Loc = tuple[str | int, ...]


class ConfigProblems(ValueError):
    """Problems found by a cross-field check, each with the key path it concerns."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _matching(regex: str, what: str) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


# Characters the Matrix spec allows in a user localpart.
_LOCALPART_RE = re.compile(r"^[a-z0-9._=/+-]+$")
_LOCALPART_HINT = "a valid localpart (use a-z, 0-9 and ._=/+-)"


def _id_pattern(value: str) -> str:
    if "{id}" not in value:
        raise ValueError(f"pattern {value!r} must contain '{{id}}'")
    if not _LOCALPART_RE.match(value.replace("{id}", "x")):
        raise ValueError(f"pattern {value!r} does not make {_LOCALPART_HINT}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Localpart = Annotated[str, _matching(_LOCALPART_RE.pattern, _LOCALPART_HINT)]
IdPattern = Annotated[str, AfterValidator(_id_pattern)]
ServerName = Annotated[
    str, _matching(r"^[A-Za-z0-9.\-:\[\]]+$", "a server name like 'example.org'")
]
# Exact ids only for admins: a glob in the admin list is too easy to get wrong.
UserIdStr = Annotated[
    str, _matching(r"^@[^:\s*?\[]+:[^\s*?\[]+$", "a full user id like '@alice:example.org'")
]
UserGlob = Annotated[str, _matching(r"^@[^:\s]*:\S+$", "a user id glob like '@*:example.org'")]
EntryPoint = Annotated[
    str,
    _matching(
        r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$",
        "an entry point like 'package.module:factory'",
    ),
]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    # forbid: a typo such as `agnets:` must fail loudly instead of being ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class HomeserverConfig(_Model):
    """Where the gateway's Matrix users live."""

    url: HttpUrl
    server_name: ServerName
    mode: Literal["client"] = "client"
    registration_shared_secret: Annotated[str | None, Field(repr=False)] = None
    registration_shared_secret_env: str | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_available(cls, value: Any) -> Any:
        if value == "appservice":
            raise ValueError("appservice mode is not available yet; use 'client'")
        return value

    @model_validator(mode="after")
    def _one_secret_source(self) -> HomeserverConfig:
        if self.registration_shared_secret and self.registration_shared_secret_env:
            msg = "set registration_shared_secret or registration_shared_secret_env, not both"
            raise ConfigProblems([(("registration_shared_secret_env",), msg)])
        return self


class SpaceConfig(_Model):
    """The deployment's Matrix Space (``#<alias>:<server>``)."""

    alias: Localpart = "salon"
    name: str = "Salon"
    topic: str | None = None


class IdentityCredentials(_Model):
    """Explicit Matrix credentials, for ``salon run`` without a shared secret."""

    user_id: UserIdStr | None = None
    access_token_env: str | None = None
    password_env: str | None = None
    device_id: str | None = None


class RouterConfig(_Model):
    """The gateway's own Matrix user, which answers commands."""

    localpart: Localpart = "salon"
    display_name: str = "Salon"
    # The AI router: when ``model`` is set, an OpenAI-compatible endpoint picks the agent
    # for messages nothing else decided; otherwise an offline lexical scorer does.
    # An empty model (``${ROUTER_MODEL:-}``) counts as unset.
    model: str | None = None
    base_url: HttpUrl | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: PositiveFloat = 10
    matrix: IdentityCredentials | None = None

    @model_validator(mode="after")
    def _base_url_with_model(self) -> RouterConfig:
        if self.model and self.base_url is None:
            msg = "required when router.model is set (e.g. https://api.openai.com/v1)"
            raise ConfigProblems([(("base_url",), msg)])
        return self


ROUTE_MATCH_KEYS = ("room", "thread", "user", "server", "platform")


def _room_ref(value: str) -> str:
    if not value.startswith(("!", "#")) or len(value) < 2:
        raise ValueError(f"{value!r} is not a room id ('!…') or alias ('#…:server')")
    return value


def _thread_ref(value: str) -> str:
    if value != "*" and (not value.startswith("$") or len(value) < 2):
        raise ValueError(f"{value!r} is not a thread root event id ('$…') or '*' (any thread)")
    return value


class RouteMatchConfig(_Model):
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


class RouteConfig(_Model):
    """A declarative route: messages that ``match`` go to ``agent`` (first match wins)."""

    match: RouteMatchConfig
    agent: str


class AccessConfig(_Model):
    """Who may talk to the agents. Unauthorised senders are ignored (fail closed)."""

    allowed_users: list[UserGlob] | None = None
    admins: list[UserIdStr] = []

    def allowed_patterns(self, server_name: str) -> list[str]:
        """Glob patterns of allowed senders; by default everyone on ``server_name``."""
        if self.allowed_users is None:
            return [f"@*:{server_name}"]
        return list(self.allowed_users)

    def is_allowed(self, user_id: str, server_name: str) -> bool:
        """Whether ``user_id`` may talk to agents (admins always may)."""
        if user_id in self.admins:
            return True
        return any(fnmatch.fnmatchcase(user_id, p) for p in self.allowed_patterns(server_name))

    def is_admin(self, user_id: str) -> bool:
        """Whether ``user_id`` is listed as an admin."""
        return user_id in self.admins


class TeamBackend(_Model):
    """A team answers through its members, over delegation (see ``teams:``)."""

    type: Literal["team"]
    mode: Literal["coordinate", "collaborate"] = "coordinate"
    lead: str
    members: Annotated[list[str], Field(min_length=1)]


class TeamConfig(_Model):
    """A team: its own Matrix user and room; ``coordinate``: the lead delegates parts to the
    members and answers; ``collaborate``: every member answers, then the lead summarises."""

    label: Annotated[str | None, Field(min_length=1)] = None
    description: str = ""
    agents: Annotated[list[str], Field(min_length=1)]
    mode: Literal["coordinate", "collaborate"] = "coordinate"
    lead: str | None = None  # default: the first of `agents`


class DelegationConfig(_Model):
    """Delegation between agents."""

    hop_limit: Annotated[int, Field(ge=1, le=15)] = 3
    deadline_s: PositiveFloat = 300


class EchoBackend(_Model):
    """Offline backend that repeats the message; for demos and tests."""

    type: Literal["echo"]
    prefix: str = ""
    delay_s: NonNegativeFloat = 0
    fail_on: Annotated[str | None, Field(min_length=1)] = None


class OpenAIBackend(_Model):
    """Any OpenAI-compatible chat-completions endpoint."""

    type: Literal["openai"]
    base_url: HttpUrl = "https://api.openai.com/v1"
    model: Annotated[str, Field(min_length=1)]
    api_key_env: str | None = "OPENAI_API_KEY"
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    max_tokens: Annotated[int | None, Field(gt=0)] = None
    timeout_s: PositiveFloat = 60
    max_retries: Annotated[int, Field(ge=0)] = 3
    # First wait before a retry of a transient error; doubles on each further retry.
    retry_backoff_s: NonNegativeFloat = 0.5
    # Rounds of ``delegate`` tool calls one turn may make before it fails.
    max_tool_rounds: Annotated[int, Field(ge=1)] = 4


class HttpBackend(_Model):
    """An upstream agent service that receives turns over HTTP."""

    type: Literal["http"]
    base_url: HttpUrl
    # Limit on connecting, on waiting for the reply, and on each pause inside a stream.
    timeout_s: PositiveFloat = 120
    headers: dict[str, str] = {}
    token_env: str | None = None
    # False: ask for a JSON reply only (no ``text/event-stream`` in ``Accept``).
    stream: bool = True


class PythonBackend(_Model):
    """An in-process backend built by a ``pkg.mod:factory`` entry point."""

    type: Literal["python"]
    entry: EntryPoint
    options: dict[str, Any] = {}


BackendConfig = Annotated[
    EchoBackend | OpenAIBackend | HttpBackend | PythonBackend | TeamBackend,
    Field(discriminator="type"),
]


class AgentConfig(_Model):
    """One agent: persona, backend and (optionally) its Matrix identity."""

    label: Annotated[str | None, Field(min_length=1)] = None
    description: str = ""
    persona: str | None = None
    localpart: Localpart | None = None
    backend: BackendConfig
    matrix: IdentityCredentials | None = None
    can_delegate_to: list[str] | None = None
    # History sent to the model is trimmed to this many (estimated) tokens.
    context_tokens: Annotated[int, Field(ge=256)] = 8000
    # The id is the key under `agents:`; SalonConfig fills it in.
    _id: str = PrivateAttr(default="")

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_shorthand(cls, value: Any) -> Any:
        # `backend: echo` is shorthand for `backend: {type: echo}`.
        return {"type": value} if isinstance(value, str) else value

    @property
    def id(self) -> AgentId:
        """The agent's id (its key under ``agents:``); empty outside a SalonConfig."""
        return AgentId(self._id)

    @property
    def display_label(self) -> str:
        """The label shown to people: ``label``, else the id title-cased."""
        return self.label or self._id.title()


class NamingConfig(_Model):
    """Patterns for Matrix names derived from agent ids (``{id}`` is replaced)."""

    agent_localpart: IdPattern = "salon_{id}"
    agent_room_alias: IdPattern = "salon-{id}"
    lobby_alias: Localpart = "salon-lobby"


class HeartbeatConfig(_Model):
    """How often agents refresh their state event, and when they count as offline."""

    interval_s: PositiveFloat = 30
    ttl_s: PositiveFloat = 90

    @model_validator(mode="after")
    def _ttl_after_interval(self) -> HeartbeatConfig:
        if self.ttl_s <= self.interval_s:
            raise ConfigProblems([(("ttl_s",), "must be greater than interval_s")])
        return self


class SyncConfig(_Model):
    """Sync loop timing and supervision backoff."""

    timeout_ms: Annotated[int, Field(ge=0)] = 30000
    startup_jitter_s: NonNegativeFloat = 2.0
    backoff_initial_s: PositiveFloat = 5
    backoff_max_s: PositiveFloat = 60

    @model_validator(mode="after")
    def _max_after_initial(self) -> SyncConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigProblems([(("backoff_max_s",), "must be at least backoff_initial_s")])
        return self


class RateLimitConfig(_Model):
    """Salon's own policy for HTTP 429 / M_LIMIT_EXCEEDED."""

    max_retries: Annotated[int, Field(ge=0)] = 8
    max_wait_s: PositiveFloat = 60
    default_wait_s: NonNegativeFloat = 1.0


class RepliesConfig(_Model):
    """How streamed replies become Matrix messages and edits."""

    edit_interval_s: NonNegativeFloat = 1.0  # at most one edit per interval
    max_edits: Annotated[int, Field(ge=1)] = 20  # per reply, the final edit included
    max_message_chars: Annotated[int, Field(ge=500, le=30000)] = 16000  # longer replies split
    max_attempts: Annotated[int, Field(ge=1)] = 3  # per turn, across crashes and restarts


class StoreConfig(_Model):
    """Where durable state lives."""

    url: str = "sqlite:///salon-data/salon.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            raise ValueError("PostgreSQL is not yet supported; use a sqlite:/// URL")
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise ValueError(f"must be a sqlite:///<path> URL, got {value!r}")
        return value

    @property
    def sqlite_path(self) -> str:
        """The database file path (``:memory:`` for an in-memory database)."""
        return self.url.removeprefix("sqlite:///")


class SalonConfig(_Model):
    """The whole ``salon.yaml``."""

    homeserver: HomeserverConfig | None = None
    space: SpaceConfig = SpaceConfig()
    router: RouterConfig = RouterConfig()
    access: AccessConfig = AccessConfig()
    agents: dict[str, AgentConfig]
    default_agent: str | None = None
    routes: list[RouteConfig] = []
    # ``pkg.mod:function`` hooks asked, in order, to pick an agent (see salon.routing.hooks).
    select_agent: list[EntryPoint] = []
    locale: Literal["en", "ru"] = "en"
    naming: NamingConfig = NamingConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    sync: SyncConfig = SyncConfig()
    ratelimit: RateLimitConfig = RateLimitConfig()
    store: StoreConfig = StoreConfig()
    replies: RepliesConfig = RepliesConfig()
    # Agent home dirs (<data_dir>/agents/<id>/SOUL.md …); relative to the config file.
    data_dir: str = "salon-data"
    teams: dict[str, TeamConfig] = {}
    # Agents hosted by other gateways of this deployment (same homeserver and naming).
    peers: list[str] = []
    delegation: DelegationConfig = DelegationConfig()

    @model_validator(mode="before")
    @classmethod
    def _teams_are_agents(cls, data: Any) -> Any:
        # A team is an agent whose backend is the team: its own user, room, routing.
        if not isinstance(data, dict) or not isinstance(data.get("teams"), dict):
            return data
        agents = dict(data.get("agents") or {})
        for team_id, team in data["teams"].items():
            if not isinstance(team, dict) or team_id in agents:
                continue  # the models' own validation reports the problem
            members = team.get("agents") or []
            lead = team.get("lead") or (members[0] if members else "")
            agents[team_id] = {
                "label": team.get("label"),
                "description": team.get("description", ""),
                "backend": {
                    "type": "team",
                    "mode": team.get("mode", "coordinate"),
                    "lead": lead,
                    "members": members,
                },
                "can_delegate_to": list(dict.fromkeys([*members, lead])),
            }
        return {**data, "agents": agents}

    @model_validator(mode="after")
    def _cross_checks(self) -> SalonConfig:
        problems: list[tuple[Loc, str]] = []
        if not self.agents:
            problems.append((("agents",), "at least one agent is required"))
        for agent_id in self.agents:
            if not AGENT_ID_RE.match(agent_id):
                msg = (
                    f"invalid agent id {agent_id!r}: use 1-32 of a-z, 0-9, '_' and '-', "
                    "starting with a letter or digit"
                )
                problems.append((("agents", agent_id), msg))
        if problems:  # names below are derived from ids, so stop at bad ids
            raise ConfigProblems(problems)
        for agent_id, agent in list(self.agents.items()):
            if agent._id not in ("", agent_id):  # one instance under two ids
                agent = self.agents[agent_id] = agent.model_copy()
            agent._id = agent_id
        known = ", ".join(sorted(self.agents))

        def check_ref(loc: Loc, name: str) -> None:
            if name not in self.agents:
                problems.append((loc, f"unknown agent {name!r} (known: {known})"))

        if self.default_agent is not None:
            check_ref(("default_agent",), self.default_agent)
        for i, rule in enumerate(self.routes):
            check_ref(("routes", i, "agent"), rule.agent)
        router_id = self.router.matrix.user_id if self.router.matrix else None
        if router_id and localpart_of_user(router_id) != self.router.localpart:
            problems.append((("router", "matrix", "user_id"), "does not match router.localpart"))
        owners: dict[str, str] = {self.router.localpart: "the router"}
        aliases = {self.naming.lobby_alias: "the lobby", self.space.alias: "the space"}
        if self.naming.lobby_alias == self.space.alias:
            problems.append((("naming", "lobby_alias"), "must differ from space.alias"))
        for team_id in self.teams:
            if not isinstance(self.agents[team_id].backend, TeamBackend):
                problems.append((("teams", team_id), "a team cannot share an agent's id"))
        for agent_id, agent in self.agents.items():
            loc: Loc = ("agents", agent_id)
            if isinstance(agent.backend, TeamBackend):
                for member in [*agent.backend.members, agent.backend.lead]:
                    if member not in self.agents or member == agent_id:
                        where = ("teams", agent_id) if agent_id in self.teams else loc
                        problems.append((where, f"team member {member!r} is not an agent"))
            for i, target in enumerate(agent.can_delegate_to or []):
                if target in self.peers:
                    continue
                check_ref((*loc, "can_delegate_to", i), target)
                if target == agent_id:
                    problems.append(
                        ((*loc, "can_delegate_to", i), "an agent cannot delegate to itself")
                    )
            user_id = agent.matrix.user_id if agent.matrix else None
            if user_id and agent.localpart and localpart_of_user(user_id) != agent.localpart:
                problems.append(
                    ((*loc, "matrix", "user_id"), "does not match the agent's localpart")
                )
            localpart = self.agent_localpart(agent_id)
            if localpart in owners:
                msg = f"localpart {localpart!r} is already used by {owners[localpart]}"
                problems.append(((*loc, "localpart") if agent.localpart else loc, msg))
            owners.setdefault(localpart, f"agent {agent_id!r}")
            alias = self.agent_room_alias_localpart(agent_id)
            if alias in aliases:
                problems.append((loc, f"room alias {alias!r} is already used by {aliases[alias]}"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def agent(self, agent_id: str) -> AgentConfig:
        """The agent with this id; ``KeyError`` naming the known ids otherwise."""
        try:
            return self.agents[agent_id]
        except KeyError:
            raise KeyError(
                f"unknown agent {agent_id!r} (known: {', '.join(self.agents)})"
            ) from None

    def delegation_targets(self, agent_id: str) -> list[str]:
        """Whom an agent may delegate to: ``can_delegate_to``, else every other agent and peer."""
        agent = self.agents[agent_id]
        if agent.can_delegate_to is not None:
            return list(agent.can_delegate_to)
        return [a for a in [*self.agents, *self.peers] if a != agent_id]

    def peer_user_id(self, agent_id: str, server_name: str) -> UserId:
        """The user id of an agent another gateway hosts (same naming pattern)."""
        return UserId(f"@{self.naming.agent_localpart.replace('{id}', agent_id)}:{server_name}")

    def agent_localpart(self, agent_id: str) -> str:
        """The Matrix localpart of an agent's user (``salon_coder``)."""
        agent = self.agent(agent_id)
        if agent.localpart:
            return agent.localpart
        if agent.matrix and agent.matrix.user_id:
            return localpart_of_user(agent.matrix.user_id)
        return self.naming.agent_localpart.replace("{id}", agent_id)

    def agent_room_alias_localpart(self, agent_id: str) -> str:
        """The localpart of an agent room's alias (``salon-coder``)."""
        self.agent(agent_id)
        return self.naming.agent_room_alias.replace("{id}", agent_id)

    def agent_user_id(self, agent_id: str, server_name: str) -> UserId:
        """An agent's full Matrix user id (``@salon_coder:server``)."""
        return UserId(f"@{self.agent_localpart(agent_id)}:{server_name}")

    def agent_room_alias(self, agent_id: str, server_name: str) -> RoomAlias:
        """An agent room's full alias (``#salon-coder:server``)."""
        return RoomAlias(f"#{self.agent_room_alias_localpart(agent_id)}:{server_name}")

    def router_user_id(self, server_name: str) -> UserId:
        """The router's full Matrix user id (``@salon:server``)."""
        return UserId(f"@{self.router.localpart}:{server_name}")

    def space_alias(self, server_name: str) -> RoomAlias:
        """The Space's full alias (``#salon:server``)."""
        return RoomAlias(f"#{self.space.alias}:{server_name}")

    def lobby_alias(self, server_name: str) -> RoomAlias:
        """The lobby's full alias (``#salon-lobby:server``)."""
        return RoomAlias(f"#{self.naming.lobby_alias}:{server_name}")
