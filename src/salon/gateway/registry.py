"""The agents this gateway hosts: one live record per agent, in one registry.

Everything the gateway holds for one hosted agent (its roster entry, Matrix
identity, own room, runtime, backend and heartbeat) is one :class:`HostedAgent`;
the :class:`HostedAgents` registry beside the roster holds them, like mautrix
holds one object per puppet. A reload swaps or removes one entry, and everyone
reading the agents sees the change at once: handlers get the registry, or one of
its read-only views (:attr:`HostedAgents.apis`, :attr:`~HostedAgents.rooms`…),
which read through to the current entries and never hold a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

from salon.agents.backend import Backend
from salon.agents.runtime import AgentRuntime, SessionStore
from salon.config.models import SalonConfig
from salon.coordination.heartbeat import Heartbeat
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.roster import Member, Roster
from salon.turns.runtimes import make_runtime, model_name

T = TypeVar("T")


@dataclass(frozen=True)
class HostedAgent:
    """One agent as this gateway runs it (replaced whole when a reload changes it)."""

    agent_id: AgentId
    member: Member  # its roster entry
    api: MatrixAPI  # its own Matrix identity
    room_id: RoomId  # its own room
    runtime: AgentRuntime
    backend: Backend
    heartbeat: Heartbeat
    model: str  # what `!context` calls its model

    @property
    def user_id(self) -> UserId:
        return self.api.user_id


def make_hosted(
    config: SalonConfig,
    member: Member,
    where: tuple[MatrixAPI, RoomId],
    backend: Backend,
    sessions: SessionStore,
    gateway: str,
) -> HostedAgent:
    """The record of ``member`` acting as ``where`` (its identity, its room), with
    ``backend``; its heartbeat (not running yet) speaks for ``gateway``."""
    api, room_id = where
    agent_id = member.agent_id
    beat = Heartbeat(
        api,
        room_id,
        agent_id=agent_id,
        gateway=gateway,
        interval_s=config.heartbeat.interval_s,
        ttl_s=config.heartbeat.ttl_s,
    )
    return HostedAgent(
        agent_id=agent_id,
        member=member,
        api=api,
        room_id=room_id,
        runtime=make_runtime(config, agent_id, backend, sessions),
        backend=backend,
        heartbeat=beat,
        model=model_name(config.agents[agent_id].backend),
    )


class HostedAgents:
    """The registry of hosted agents, keyed by agent id, in the order they came."""

    def __init__(self, roster: Roster) -> None:
        self.roster = roster
        self._agents: dict[AgentId, HostedAgent] = {}
        # Indexes of the same records, for the lookups on every message.
        self._by_user: dict[UserId, HostedAgent] = {}
        self._by_room: dict[RoomId, HostedAgent] = {}
        self.apis: Mapping[AgentId, MatrixAPI] = _View(self._agents, lambda h: h.api)
        self.rooms: Mapping[AgentId, RoomId] = _RoomView(self._agents, self._by_room)
        self.users: Mapping[AgentId, UserId] = _View(self._agents, lambda h: h.user_id)
        self.runtimes: Mapping[AgentId, AgentRuntime] = _View(self._agents, lambda h: h.runtime)
        self.models: Mapping[AgentId, str] = _View(self._agents, lambda h: h.model)
        self.members: Sequence[Member] = _Members(self)

    def get(self, agent_id: str) -> HostedAgent | None:
        return self._agents.get(AgentId(agent_id))

    def require(self, agent_id: str) -> HostedAgent:
        """The agent's record; KeyError when it is not hosted here."""
        hosted = self._agents.get(AgentId(agent_id))
        if hosted is None:
            raise KeyError(f"agent {agent_id!r} is not hosted here")
        return hosted

    def all(self) -> list[HostedAgent]:
        return list(self._agents.values())

    def swap(self, hosted: HostedAgent) -> HostedAgent | None:
        """Put ``hosted`` in (a new agent, or a changed one replaced whole); returns
        the record it replaced."""
        old = self.remove(hosted.agent_id)
        self._agents[hosted.agent_id] = hosted
        self._by_user[hosted.user_id] = hosted
        self._by_room[hosted.room_id] = hosted
        return old

    def remove(self, agent_id: str) -> HostedAgent | None:
        """Take the agent's record out (it is no longer hosted); returns it."""
        old = self._agents.pop(AgentId(agent_id), None)
        if old is not None:
            self._by_user.pop(old.user_id, None)
            self._by_room.pop(old.room_id, None)
        return old

    def __iter__(self) -> Iterator[HostedAgent]:
        return iter(list(self._agents.values()))

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    def by_user(self, user_id: str) -> HostedAgent | None:
        """The hosted agent whose Matrix user this is."""
        return self._by_user.get(UserId(user_id))

    def room_of(self, agent_id: str) -> RoomId | None:
        hosted = self._agents.get(AgentId(agent_id))
        return None if hosted is None else hosted.room_id

    def owner_of(self, room_id: str) -> HostedAgent | None:
        """The hosted agent whose own room ``room_id`` is."""
        return self._by_room.get(RoomId(room_id))


class _View(Mapping[AgentId, T], Generic[T]):
    """One field of every record, read through (never a copy)."""

    def __init__(self, agents: dict[AgentId, HostedAgent], field: Callable[[HostedAgent], T]):
        self._agents = agents
        self._field = field

    def __getitem__(self, agent_id: AgentId) -> T:
        return self._field(self._agents[agent_id])

    def __iter__(self) -> Iterator[AgentId]:
        return iter(list(self._agents))

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents


class _RoomView(_View[RoomId]):
    """Each agent's own room, and (``owner_of_room``) whose room one is, from the index:
    a scan of every agent was paid three times per message (see turns/voices.py)."""

    def __init__(self, agents: dict[AgentId, HostedAgent], by_room: dict[RoomId, HostedAgent]):
        super().__init__(agents, lambda h: h.room_id)
        self._by_room = by_room

    def owner_of_room(self, room_id: str) -> AgentId | None:
        hosted = self._by_room.get(RoomId(room_id))
        return None if hosted is None else hosted.agent_id


class _Members(Sequence[Member]):
    """The hosted agents' roster entries, in the roster's order (what `!agent` lists)."""

    def __init__(self, hosted: HostedAgents) -> None:
        self._hosted = hosted

    def _list(self) -> list[Member]:
        return [m for m in self._hosted.roster.hosted() if m.agent_id in self._hosted]

    @overload
    def __getitem__(self, index: int) -> Member: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Member]: ...
    def __getitem__(self, index: int | slice) -> Member | Sequence[Member]:
        return self._list()[index]

    def __len__(self) -> int:
        return len(self._list())

    def __iter__(self) -> Iterator[Member]:
        return iter(self._list())


class Identities(Mapping[UserId, MatrixAPI]):
    """Every identity of the gateway by user id: the router and the hosted agents
    (read through the registry: an agent a reload adds or removes comes and goes)."""

    def __init__(self, router: MatrixAPI, hosted: HostedAgents) -> None:
        self.router = router
        self.hosted = hosted

    def __getitem__(self, user_id: UserId) -> MatrixAPI:
        if user_id == self.router.user_id:
            return self.router
        hosted = self.hosted.by_user(user_id)
        if hosted is None:
            raise KeyError(user_id)
        return hosted.api

    def __iter__(self) -> Iterator[UserId]:
        return iter([self.router.user_id, *(h.user_id for h in self.hosted)])

    def __len__(self) -> int:
        return 1 + len(self.hosted)
