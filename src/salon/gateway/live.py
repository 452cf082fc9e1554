"""Applying a new config to a running gateway: agents added, removed or changed,
routing and access swapped (see :mod:`salon.gateway.reload` for when and why)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from salon._exceptions import MatrixError, SalonError
from salon.agents.backend import Backend
from salon.agents.registry import build_backend, close_backend
from salon.agents.runtime import AgentRuntime
from salon.commands.handlers import CommandHandlers
from salon.config.models import AccessConfig, SalonConfig
from salon.coordination.heartbeat import Heartbeat
from salon.gateway.bootstrap import ensure_agent_room, link_agent_room
from salon.gateway.handover import hand_over, rooms_of
from salon.gateway.identities import identity_specs
from salon.gateway.messages import MessageHandler, ReactionHandler
from salon.gateway.reload import ConfigDiff
from salon.gateway.sessions import SESSION_STATE, START_JITTER_S
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.login import Authenticator
from salon.matrix.space import SpaceManager
from salon.matrix.sync import ClientSyncSource
from salon.roster import Roster
from salon.routing.router import Router
from salon.supervisor import Supervisor
from salon.tasks import spawn
from salon.turns.voices import leave_joined

if TYPE_CHECKING:
    from salon.app.gateway import Gateway

log = structlog.get_logger("salon.gateway.live")

# How long a removed agent's running turns may take to finish before they are cut off.
REMOVE_DRAIN_S = 20.0
ModelName = Callable[[SalonConfig, str], str]


def log_access_policy(access: AccessConfig) -> None:
    """Say who may reach the agents (at start-up, and when a reload changes it)."""
    say = log.info if access.admins or access.allowed_users else log.warning
    say(
        "access.policy",
        policy=access.describe(),
        admins=list(access.admins),
        allowed_users=access.allowed_patterns(),
    )


@dataclass
class Parts:
    """The pieces of a running gateway a reload changes (the same objects the gateway
    runs with, so a change here is a change everywhere)."""

    auth: Authenticator
    spaces: SpaceManager
    source: ClientSyncSource
    supervisor: Supervisor
    apis: MutableMapping[UserId, MatrixAPI]
    agent_apis: MutableMapping[AgentId, MatrixAPI]
    agent_users: MutableMapping[AgentId, UserId]
    agent_rooms: MutableMapping[AgentId, RoomId]
    runtimes: MutableMapping[AgentId, AgentRuntime]
    backends: MutableMapping[AgentId, Backend]
    beats: MutableMapping[AgentId, Heartbeat]
    messages: MessageHandler
    reactions: ReactionHandler
    commands: CommandHandlers
    space_id: RoomId | None
    lobby_id: RoomId
    invitees: list[UserId]
    make_runtime: Callable[[SalonConfig, AgentId, Backend], AgentRuntime]
    model_name: ModelName
    set_router: Callable[[Router], Awaitable[None]]
    extra: dict[str, object] = field(default_factory=dict)


async def apply_config(gateway: Gateway, parts: Parts, new: SalonConfig, diff: ConfigDiff) -> None:
    """Change the running gateway to ``new`` where it can change live."""
    old = gateway.config
    roster = gateway.roster
    assert roster is not None and gateway.coordinator is not None
    # Keep what only a restart can change; say so (the reloader logs and stores it).
    keep = {s: getattr(old, s) for s in diff.restart if s != "router"}
    if "router" in diff.restart:
        keep["router"] = old.router
    new = new.model_copy(update=keep)
    # Build every new or changed backend first: a broken one refuses the whole reload.
    built: dict[AgentId, Backend] = {}
    try:
        for agent_id in [*diff.added, *diff.changed]:
            built[AgentId(agent_id)] = build_backend(new.agents[agent_id])
    except SalonError:
        await asyncio.gather(*(close_backend(b) for b in built.values()))
        raise
    new_roster = Roster.from_config(new)
    for agent_id in diff.added:
        await _add(gateway, parts, new, new_roster, AgentId(agent_id), built[AgentId(agent_id)])
    for agent_id in diff.changed:
        await _change(parts, new, AgentId(agent_id), built[AgentId(agent_id)])
    # One switch: routing, commands and delegation see the new who-is-who together.
    roster.replace_with(new_roster)
    gateway.config = new
    coordinator = gateway.coordinator
    coordinator.manager.can_delegate_to = {a: new.delegation_targets(a) for a in new.agents}
    coordinator.manager.descriptions = {m.agent_id: m.description for m in roster}
    parts.commands.agents = roster.hosted()
    parts.commands.by_id = {a.agent_id: a for a in parts.commands.agents}
    parts.commands.models = {m.agent_id: parts.model_name(new, m.agent_id) for m in roster.hosted()}
    parts.messages.access = parts.reactions.access = new.access
    if diff.access:
        log_access_policy(new.access)
    if diff.routing or diff.added or diff.removed or diff.changed:
        await parts.set_router(Router.from_config(new, roster))
    for agent_id in diff.removed:
        await _remove(
            gateway, parts, AgentId(agent_id), was_session=agent_id in gateway.ended_sessions
        )


async def _add(
    gateway: Gateway,
    parts: Parts,
    config: SalonConfig,
    roster: Roster,
    agent_id: AgentId,
    backend: Backend,
) -> None:
    """A new agent: its user, room and Space entry, its sync loop and heartbeat."""
    session = gateway.session_agents.get(agent_id)
    if session is not None:
        await asyncio.sleep(random.uniform(0, START_JITTER_S))
    spec = next(s for s in identity_specs(config) if s.agent_id == agent_id)
    api = await parts.auth.login(spec.user_id, spec.source)
    await api.set_displayname(spec.display_name)
    # Into the lobby first, as the agents at start were (the router invites).
    await parts.spaces.api.invite(parts.lobby_id, api.user_id)
    visitors = [m.user_id for m in roster if m.agent_id != agent_id]
    # The agents already running visit the new room to delegate, as at start.
    room_id = await ensure_agent_room(
        config,
        agent_id,
        api,
        gateway.store,  # type: ignore[arg-type]
        parts.lobby_id,
        [*parts.invitees, *visitors],
        # Known before the invitations go out: the running agents see visits.
        known=lambda room: parts.agent_rooms.__setitem__(agent_id, room),
    )
    if parts.space_id is not None:
        with contextlib.suppress(MatrixError):
            await link_agent_room(parts.spaces, api, parts.space_id, room_id)
    if session is not None:
        # Marked temporary in the room itself, for people and for `salon who`.
        marker = {"v": 1, "template": session.template, "expires_ts": session.expires_at}
        await api.send_state(room_id, SESSION_STATE, marker)
    parts.apis[api.user_id] = api
    parts.agent_apis[agent_id] = api
    parts.agent_users[agent_id] = api.user_id
    parts.agent_rooms[agent_id] = room_id
    # Back again after a removal, it acts in its room itself (see voices).
    with contextlib.suppress(MatrixError):
        await leave_joined(parts.spaces.api, [room_id])
    parts.backends[agent_id] = backend
    parts.runtimes[agent_id] = parts.make_runtime(config, agent_id, backend)
    coordination = gateway.coordinator
    assert coordination is not None
    coordination.directory.apis[str(agent_id)] = api  # type: ignore[index]
    coordination.directory.rooms[str(agent_id)] = room_id  # type: ignore[index]
    await parts.source.add(api, timeout=60)
    beat = Heartbeat(
        api,
        room_id,
        agent_id=agent_id,
        gateway=gateway.name,
        interval_s=config.heartbeat.interval_s,
        ttl_s=config.heartbeat.ttl_s,
    )
    parts.beats[agent_id] = beat
    parts.supervisor.spawn(f"heartbeat:{agent_id}", beat.run)
    log.info("reload.agent_added", agent=agent_id, room_id=room_id)


async def _change(parts: Parts, config: SalonConfig, agent_id: AgentId, backend: Backend) -> None:
    """A changed agent: the next turn runs with its new persona, model and backend."""
    old_backend = parts.backends.get(agent_id)
    parts.backends[agent_id] = backend
    parts.runtimes[agent_id] = parts.make_runtime(config, agent_id, backend)
    api = parts.agent_apis.get(agent_id)
    if api is not None:
        with contextlib.suppress(MatrixError):
            await api.set_displayname(config.agents[agent_id].display_label)
    if old_backend is not None:
        # Turns already running keep the old one until they end.
        spawn(_close_later(old_backend), f"close-backend:{agent_id}")
    log.info("reload.agent_changed", agent=agent_id)


async def _close_later(backend: Backend, after_s: float = REMOVE_DRAIN_S * 3) -> None:
    await asyncio.sleep(after_s)
    await close_backend(backend)


async def _remove(
    gateway: Gateway, parts: Parts, agent_id: AgentId, *, was_session: bool = False
) -> None:
    """A removed agent: its turns finish (bounded), it goes offline and leaves the Space
    list; its room and history stay."""
    runner = gateway._runner
    if runner is not None:
        cut = await runner.drain_agent(agent_id, REMOVE_DRAIN_S)
        if cut:
            log.warning("reload.turns_cut_off", agent=agent_id, turns=cut)
    beat = parts.beats.pop(agent_id, None)
    await parts.supervisor.cancel(f"heartbeat:{agent_id}")
    if beat is not None:
        await beat.go_offline()
    user = parts.agent_users.pop(agent_id, None)
    if user is not None:
        await parts.source.remove(user)
        parts.apis.pop(user, None)
    room_id = parts.agent_rooms.pop(agent_id, None)
    if parts.space_id is not None and room_id is not None:
        with contextlib.suppress(MatrixError):
            await parts.spaces.unlink(parts.space_id, room_id)
    if room_id is not None:
        # Visitors have no more business there (its room and history stay).
        for other, api in parts.agent_apis.items():
            if other != agent_id:
                with contextlib.suppress(MatrixError):
                    await leave_joined(api, [room_id])
    removed = parts.agent_apis.get(agent_id)
    if removed is not None:
        assert gateway.store is not None
        rooms = await rooms_of(gateway.store, agent_id, room_id)
        await hand_over(parts.spaces.api, agent_id, rooms, removed)
    parts.agent_apis.pop(agent_id, None)
    parts.runtimes.pop(agent_id, None)
    coordination = gateway.coordinator
    if coordination is not None:
        coordination.directory.apis.pop(str(agent_id), None)  # type: ignore[attr-defined]
        coordination.directory.rooms.pop(str(agent_id), None)  # type: ignore[attr-defined]
    backend = parts.backends.pop(agent_id, None)
    if backend is not None:
        await close_backend(backend)
    log.info("reload.agent_removed", agent=agent_id, room_id=room_id)
