"""Who is who: every agent, team and peer of a deployment, plus the router, Space and lobby.

One answer, built once from the config, asked by everything else (like mautrix's
bridge puppets, made explicit): user ids, localparts, labels, room aliases, and
whether this gateway hosts an agent or a peer gateway does. Depends only on the
config and the id types.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from salon.ids import AgentId, RoomAlias, UserId, localpart_of_user, server_of_user

if TYPE_CHECKING:
    from salon.config.models import SalonConfig

MemberKind = Literal["agent", "team", "peer"]


@dataclass(frozen=True)
class Member:
    """One agent (or team, or peer gateway's agent) and the names it goes by.

    ``localpart`` is what people may type as ``@salon_coder``; ``label`` what they may
    type as ``@Coder``; ``description`` feeds the AI router and the lexical scorer.
    """

    agent_id: AgentId
    user_id: UserId
    label: str
    localpart: str
    description: str = ""
    room_alias: str = ""  # the full alias of its agent room
    kind: MemberKind = "agent"

    @property
    def hosted(self) -> bool:
        """Whether this gateway runs the agent (a peer's agent runs elsewhere)."""
        return self.kind != "peer"


class Roster:
    """The deployment's who-is-who."""

    def __init__(
        self,
        members: list[Member],
        *,
        router_user_id: UserId,
        space_alias: RoomAlias,
        lobby_alias: RoomAlias,
        server_name: str,
    ) -> None:
        self.router_user_id = router_user_id
        self.space_alias = space_alias
        self.lobby_alias = lobby_alias
        self.server_name = server_name
        self._by_id: dict[AgentId, Member] = {m.agent_id: m for m in members}
        self._by_user: dict[UserId, Member] = {m.user_id: m for m in members}
        self._by_alias: dict[str, Member] = {m.room_alias: m for m in members if m.room_alias}

    @classmethod
    def from_config(cls, config: SalonConfig) -> Roster:
        """The roster of ``config`` (which must name its homeserver)."""
        if config.homeserver is None:
            raise ValueError("the roster needs config.homeserver")
        server = config.homeserver.server_name
        members = []
        for agent_id, agent in config.agents.items():
            team = getattr(agent.backend, "type", "") == "team"
            members.append(
                Member(
                    agent_id=AgentId(agent_id),
                    user_id=config.agent_user_id(agent_id, server),
                    label=agent.display_label,
                    localpart=config.agent_localpart(agent_id),
                    description=agent.description,
                    room_alias=config.agent_room_alias(agent_id, server),
                    kind="team" if team else "agent",
                )
            )
        pattern = config.naming.agent_room_alias
        for peer_id, peer in config.peers.items():
            user_id = UserId(peer.user_id)
            alias = f"#{pattern.replace('{id}', peer_id)}:{server_of_user(user_id)}"
            members.append(
                Member(
                    agent_id=AgentId(peer_id),
                    user_id=user_id,
                    label=peer.label or peer_id.title(),
                    localpart=localpart_of_user(user_id),
                    description=peer.description,
                    room_alias=RoomAlias(alias),
                    kind="peer",
                )
            )
        return cls(
            members,
            router_user_id=config.router_user_id(server),
            space_alias=config.space_alias(server),
            lobby_alias=config.lobby_alias(server),
            server_name=server,
        )

    def replace_with(self, other: Roster) -> None:
        """Become ``other`` (a reloaded config): everything holding this roster sees the
        new who-is-who at once, with no second copy to forget to update."""
        self.router_user_id = other.router_user_id
        self.space_alias = other.space_alias
        self.lobby_alias = other.lobby_alias
        self.server_name = other.server_name
        self._by_id, self._by_user = other._by_id, other._by_user
        self._by_alias = other._by_alias

    def __iter__(self) -> Iterator[Member]:
        return iter(self._by_id.values())

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._by_id

    def member(self, agent_id: str) -> Member:
        """The member with this id (KeyError naming the known ids otherwise)."""
        try:
            return self._by_id[AgentId(agent_id)]
        except KeyError:
            known = ", ".join(self._by_id)
            raise KeyError(f"unknown agent {agent_id!r} (known: {known})") from None

    def get(self, agent_id: str) -> Member | None:
        """The member with this id, or None."""
        return self._by_id.get(AgentId(agent_id))

    def hosted(self) -> list[Member]:
        """Agents and teams this gateway runs, in config order."""
        return [m for m in self._by_id.values() if m.hosted]

    def peers(self) -> list[Member]:
        """Agents other gateways of the deployment run (pinned by user id in config)."""
        return [m for m in self._by_id.values() if not m.hosted]

    def user_id(self, agent_id: str) -> UserId:
        """An agent's (or peer's) Matrix user id."""
        return self.member(agent_id).user_id

    def agent_of(self, user_id: str) -> AgentId | None:
        """The agent (hosted or peer) behind a user id, or None for anyone else."""
        member = self._by_user.get(UserId(user_id))
        return member.agent_id if member else None

    def hosted_agent_of(self, user_id: str) -> AgentId | None:
        """The agent this gateway hosts behind a user id, or None."""
        member = self._by_user.get(UserId(user_id))
        return member.agent_id if member and member.hosted else None

    def is_ours(self, user_id: str) -> bool:
        """The router or an agent this gateway hosts (their echoes are not news)."""
        return user_id == self.router_user_id or self.hosted_agent_of(user_id) is not None

    def by_room_alias(self, alias: str) -> Member | None:
        """Whose agent room has this alias."""
        return self._by_alias.get(alias)

    def label(self, agent_id: str) -> str:
        """The label shown to people (the id itself for an unknown agent)."""
        member = self.get(agent_id)
        return member.label if member else agent_id
