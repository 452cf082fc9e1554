"""The ``salon.yaml`` schema: :class:`SalonConfig`, the whole file.

The sections live in modules by concern (``deployment``, ``routing``,
``agents``, ``backends``; shared types in ``base``; the checks across sections
in ``checks``). Every model is re-exported here, so ``from salon.config.models
import X`` works for all of them.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from salon.config.agents import (
    AgentConfig,
    ApprovalConfig,
    DelegationConfig,
    PeerConfig,
    TeamConfig,
    peer_list_error,
)
from salon.config.backends import (
    BackendConfig,
    EchoBackend,
    HttpBackend,
    OpenAIBackend,
    PythonBackend,
    TeamBackend,
)
from salon.config.base import (
    AGENT_ID_RE,
    ConfigModel,
    ConfigProblems,
    EntryPoint,
    HttpUrl,
    IdPattern,
    Loc,
    Localpart,
    NonNegativeFloat,
    PositiveFloat,
    ServerName,
    UserGlob,
    UserIdStr,
)
from salon.config.checks import (
    id_problems,
    name_problems,
    peer_problems,
    reference_problems,
    teams_as_agents,
)
from salon.config.deployment import (
    ApiConfig,
    AppserviceConfig,
    AttachmentsConfig,
    ClusterConfig,
    DispatchConfig,
    EncryptionConfig,
    HeartbeatConfig,
    HomeserverConfig,
    IdentityCredentials,
    NamingConfig,
    RateLimitConfig,
    RepliesConfig,
    ShutdownConfig,
    SpaceConfig,
    StoreConfig,
    SyncConfig,
    TurnsConfig,
)
from salon.config.routing import (
    ROUTE_MATCH_KEYS,
    AccessConfig,
    RouteConfig,
    RouteMatchConfig,
    RouterConfig,
    RoutingConfig,
)
from salon.ids import RoomAlias, UserId, localpart_of_user

__all__ = [
    "AGENT_ID_RE",
    "ROUTE_MATCH_KEYS",
    "AccessConfig",
    "AgentConfig",
    "ApiConfig",
    "ApprovalConfig",
    "AppserviceConfig",
    "AttachmentsConfig",
    "BackendConfig",
    "ClusterConfig",
    "ConfigModel",
    "ConfigProblems",
    "DelegationConfig",
    "DispatchConfig",
    "EchoBackend",
    "EncryptionConfig",
    "EntryPoint",
    "HeartbeatConfig",
    "HomeserverConfig",
    "HttpBackend",
    "HttpUrl",
    "IdPattern",
    "IdentityCredentials",
    "Loc",
    "Localpart",
    "NamingConfig",
    "NonNegativeFloat",
    "OpenAIBackend",
    "PeerConfig",
    "PositiveFloat",
    "PythonBackend",
    "RateLimitConfig",
    "RepliesConfig",
    "RouteConfig",
    "RouteMatchConfig",
    "RouterConfig",
    "RoutingConfig",
    "SalonConfig",
    "ServerName",
    "ShutdownConfig",
    "SpaceConfig",
    "StoreConfig",
    "SyncConfig",
    "TeamBackend",
    "TeamConfig",
    "TurnsConfig",
    "UserGlob",
    "UserIdStr",
]


_Keyed = TypeVar("_Keyed", AgentConfig, PeerConfig)


def _fill_ids(entries: dict[str, _Keyed]) -> None:
    """Give each entry its key as ``id`` (a private attribute, so it is not a setting)."""
    for key, entry in list(entries.items()):
        if entry._id not in ("", key):  # one instance under two ids
            entry = entries[key] = entry.model_copy()
        entry._id = key


class SalonConfig(ConfigModel):
    """The whole ``salon.yaml``."""

    homeserver: HomeserverConfig | None = None
    space: SpaceConfig = SpaceConfig()
    router: RouterConfig = RouterConfig()
    access: AccessConfig = AccessConfig()
    agents: dict[str, AgentConfig]
    default_agent: str | None = None
    routes: list[RouteConfig] = Field(default_factory=list)
    # ``pkg.mod:function`` hooks asked, in order, to pick an agent (see salon.routing.hooks).
    select_agent: list[EntryPoint] = Field(default_factory=list)
    routing: RoutingConfig = RoutingConfig()
    locale: Literal["en", "ru"] = "en"
    naming: NamingConfig = NamingConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    sync: SyncConfig = SyncConfig()
    ratelimit: RateLimitConfig = RateLimitConfig()
    store: StoreConfig = StoreConfig()
    replies: RepliesConfig = RepliesConfig()
    turns: TurnsConfig = TurnsConfig()
    dispatch: DispatchConfig = DispatchConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    cluster: ClusterConfig = ClusterConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    # Agent home dirs (<data_dir>/agents/<id>/SOUL.md …); relative to the config file.
    data_dir: str = "salon-data"
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    # Agents hosted by other gateways of this deployment, by id, each pinned by user id.
    peers: dict[str, PeerConfig] = Field(default_factory=dict)
    delegation: DelegationConfig = DelegationConfig()
    approval: ApprovalConfig = ApprovalConfig()
    # The HTTP server (admin API, OpenAI-compatible API, metrics); off when absent.
    api: ApiConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _teams_are_agents(cls, data: Any) -> Any:
        return teams_as_agents(data)

    @field_validator("peers", mode="before")
    @classmethod
    def _no_peer_list(cls, value: Any, info: ValidationInfo) -> Any:
        # `naming` and `homeserver` come before `peers`, so the hint can use the real names.
        naming = info.data.get("naming") or NamingConfig()
        homeserver = info.data.get("homeserver")
        server = homeserver.server_name if homeserver else "example.org"
        error = peer_list_error(value, naming.agent_localpart, server)
        if error is not None:
            raise error
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> SalonConfig:
        problems = id_problems(self)
        if problems:  # names below are derived from ids, so stop at bad ids
            raise ConfigProblems(problems)
        _fill_ids(self.agents)
        _fill_ids(self.peers)
        problems = reference_problems(self) + name_problems(self) + peer_problems(self)
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

    def approval_patterns(self, agent_id: str) -> list[str]:
        """The calls of an agent that need a person's OK: its ``approve:``, else
        ``approval.default`` (an agent no longer configured: the default)."""
        agent = self.agents.get(agent_id)
        if agent is not None and agent.approve is not None:
            return list(agent.approve)
        return list(self.approval.default)

    def peer_user_id(self, agent_id: str) -> UserId:
        """The pinned user id of a peer agent; ``KeyError`` naming the known peers otherwise."""
        try:
            return UserId(self.peers[agent_id].user_id)
        except KeyError:
            known = ", ".join(self.peers) or "none"
            raise KeyError(f"unknown peer {agent_id!r} (known: {known})") from None

    def agent_localpart(self, agent_id: str) -> str:
        """The Matrix localpart of an agent's user (``salon_coder``)."""
        agent = self.agent(agent_id)
        if agent.localpart:
            return agent.localpart
        if agent.matrix and agent.matrix.user_id:
            return localpart_of_user(agent.matrix.user_id)
        return self.named_localpart(agent_id)

    def named_localpart(self, agent_id: str) -> str:
        """The localpart ``naming`` gives an agent id, configured or not (a former agent)."""
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
