"""Changing the hosted agents of a running gateway: one added, changed or removed
(see :mod:`salon.gateway.reload` for when and why; the composition root applies
the rest of a new config). Each change swaps or removes one registry entry."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import structlog

from salon._exceptions import MatrixError, SalonError
from salon.agents.backend import Backend
from salon.agents.registry import build_backend, close_backend
from salon.config.models import AccessConfig, SalonConfig
from salon.gateway.bootstrap import Topology, ensure_agent_room, link_agent_room
from salon.gateway.handover import hand_over, rooms_of
from salon.gateway.identities import identity_specs
from salon.gateway.registry import HostedAgents, make_hosted
from salon.gateway.sessions import SESSION_STATE, START_JITTER_S
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.login import Authenticator
from salon.matrix.source import IdentitySource
from salon.matrix.space import SpaceManager
from salon.roster import Roster
from salon.store import Store
from salon.store.session_agents import SessionAgent
from salon.supervisor import Supervisor
from salon.tasks import spawn
from salon.turns.runner import TurnRunner
from salon.turns.voices import leave_joined

log = structlog.get_logger("salon.gateway.live")

# How long a removed agent's running turns may take to finish before they are cut off.
REMOVE_DRAIN_S = 20.0


def log_access_policy(access: AccessConfig) -> None:
    """Say who may reach the agents (at start-up, and when a reload changes it)."""
    say = log.info if access.admins or access.allowed_users else log.warning
    say(
        "access.policy",
        policy=access.describe(),
        admins=list(access.admins),
        allowed_users=access.allowed_patterns(),
    )


@dataclass(frozen=True)
class LiveParts:
    """What changing the hosted agents works with: the running gateway's own parts."""

    store: Store
    auth: Authenticator
    spaces: SpaceManager
    source: IdentitySource
    supervisor: Supervisor
    runner: TurnRunner
    hosted: HostedAgents
    topology: Topology
    invitees: Sequence[UserId]
    gateway: str  # this gateway's name (heartbeats carry it)


async def build_backends(config: SalonConfig, agents: Iterable[str]) -> dict[AgentId, Backend]:
    """The backends of new or changed ``agents``, all or none: a broken one refuses
    the whole reload (those built already are closed)."""
    built: dict[AgentId, Backend] = {}
    try:
        for agent_id in agents:
            built[AgentId(agent_id)] = build_backend(config.agents[agent_id])
    except SalonError:
        await asyncio.gather(*(close_backend(b) for b in built.values()))
        raise
    return built


class LiveAgents:
    """Adds, changes and removes hosted agents while the gateway runs."""

    def __init__(self, parts: LiveParts) -> None:
        self.parts = parts

    async def add(
        self,
        config: SalonConfig,
        roster: Roster,
        agent_id: AgentId,
        backend: Backend,
        session: SessionAgent | None = None,
    ) -> None:
        """A new agent: its user, room and Space entry, its sync loop and heartbeat."""
        parts, hosted = self.parts, self.parts.hosted
        if session is not None:
            await asyncio.sleep(random.uniform(0, START_JITTER_S))
        spec = next(s for s in identity_specs(config) if s.agent_id == agent_id)
        api = await parts.auth.login(spec.user_id, spec.source)
        await api.set_displayname(spec.display_name)
        lobby_id, space_id = parts.topology.lobby_id, parts.topology.space_id
        # Into the lobby first, as the agents at start were (the router invites).
        await parts.spaces.api.invite(lobby_id, api.user_id)
        # The hosted agents are invited when they visit (see bootstrap); the peers' now.
        visitors = [m.user_id for m in roster.peers()]

        def known(room_id: RoomId) -> None:
            # Hosted before the invitations go out: the running agents see visits.
            member = roster.member(agent_id)
            entry = make_hosted(
                config, member, (api, room_id), backend, parts.store.sessions, parts.gateway
            )
            hosted.swap(entry)

        room_id = await ensure_agent_room(
            config,
            agent_id,
            api,
            parts.store,
            lobby_id,
            [*parts.invitees, *visitors],
            known=known,
        )
        if space_id is not None:
            with contextlib.suppress(MatrixError):
                await link_agent_room(parts.spaces, api, space_id, room_id)
        if session is not None:
            # Marked temporary in the room itself, for people and for `salon who`.
            marker = {"v": 1, "template": session.template, "expires_ts": session.expires_at}
            await api.send_state(room_id, SESSION_STATE, marker)
        # Back again after a removal, it acts in its room itself (see voices).
        with contextlib.suppress(MatrixError):
            await leave_joined(parts.spaces.api, [room_id])
        await parts.source.add(api, timeout=60)
        parts.supervisor.spawn(
            f"heartbeat:{agent_id}", hosted.require(agent_id).heartbeat.run, leader_only=True
        )
        log.info("reload.agent_added", agent=agent_id, room_id=room_id)

    async def change(
        self, config: SalonConfig, roster: Roster, agent_id: AgentId, backend: Backend
    ) -> None:
        """A changed agent: the next turn runs with its new persona, model and backend."""
        old = self.parts.hosted.get(agent_id)
        if old is None:
            await close_backend(backend)
            return
        fresh = make_hosted(
            config,
            roster.member(agent_id),
            (old.api, old.room_id),
            backend,
            self.parts.store.sessions,
            self.parts.gateway,
        )
        self.parts.hosted.swap(replace(fresh, heartbeat=old.heartbeat))  # the one running
        with contextlib.suppress(MatrixError):
            await old.api.set_displayname(config.agents[agent_id].display_label)
        # Turns already running keep the old one until they end.
        spawn(_close_later(old.backend), f"close-backend:{agent_id}")
        log.info("reload.agent_changed", agent=agent_id)

    async def remove(self, agent_id: AgentId) -> None:
        """A removed agent: its turns finish (bounded), it goes offline and leaves the
        Space list; its room and history stay."""
        parts = self.parts
        cut = await parts.runner.drain_agent(agent_id, REMOVE_DRAIN_S)
        if cut:
            log.warning("reload.turns_cut_off", agent=agent_id, turns=cut)
        entry = parts.hosted.get(agent_id)
        await parts.supervisor.cancel(f"heartbeat:{agent_id}")
        if entry is None:
            return
        await entry.heartbeat.go_offline()
        await parts.source.remove(entry.user_id)
        # No longer hosted: its identity, room, runtime and backend go together.
        parts.hosted.remove(agent_id)
        room_id, space_id = entry.room_id, parts.topology.space_id
        if space_id is not None:
            with contextlib.suppress(MatrixError):
                await parts.spaces.unlink(space_id, room_id)
        # Visitors have no more business there (its room and history stay).
        for other in parts.hosted:
            with contextlib.suppress(MatrixError):
                await leave_joined(other.api, [room_id])
        rooms = await rooms_of(parts.store, agent_id, room_id)
        await hand_over(parts.spaces.api, agent_id, rooms, entry.api)
        await close_backend(entry.backend)
        log.info("reload.agent_removed", agent=agent_id, room_id=room_id)


async def _close_later(backend: Backend, after_s: float = REMOVE_DRAIN_S * 3) -> None:
    await asyncio.sleep(after_s)
    await close_backend(backend)
