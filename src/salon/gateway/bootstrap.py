"""Find or create the deployment's Space, lobby and agent rooms at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from salon import responses
from salon._exceptions import MatrixError
from salon.config.models import SalonConfig
from salon.gateway.visits import visitors_leave
from salon.gateway.warm import WarmFacts
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import room_encryption_state
from salon.matrix.space import RoomSpec, SpaceManager
from salon.store import Store
from salon.store.records import RoomKind
from salon.turns.voices import leave_joined

log = structlog.get_logger("salon.gateway.bootstrap")


@dataclass(frozen=True)
class Topology:
    """The rooms of a running deployment."""

    space_id: RoomId | None
    space_error: str | None
    lobby_id: RoomId
    # At start: the rooms bootstrap found or made; while running, the hosted agents'
    # registry's view of them (a reload adds and removes rooms there).
    agent_rooms: Mapping[AgentId, RoomId]
    # What the next warm start may take as it is (each identity's rooms not yet in it).
    facts: WarmFacts | None = None
    # The agents this start took from ``facts`` unasked: checked once it is ready.
    taken: Mapping[AgentId, RoomId] = field(default_factory=dict)


def _encryption(config: SalonConfig) -> list[dict[str, object]]:
    """The initial state that makes a shared room (lobby, agent room) encrypted, when
    ``encryption.rooms`` is ``all``."""
    return [room_encryption_state()] if config.encryption.encrypts("shared") else []


# Requests in flight at once for the per-agent steps of a start (Space entries).
START_CONCURRENCY = 16


async def _ensure_joined(
    api: MatrixAPI, rooms: list[RoomId], via: str, joined: set[RoomId] | None = None
) -> None:
    """``api`` joins those of ``rooms`` it is not in; ``joined`` (its rooms, if known)
    is kept up to date."""
    if joined is None:
        joined = set(await api.joined_rooms())
    for room_id in rooms:
        if room_id not in joined:
            await api.join(room_id, [via])
            joined.add(room_id)


async def _each(items: list[Any], step: Callable[[Any], Awaitable[None]]) -> None:
    """``step`` for every item, a few at a time (a thousand agents: not one by one)."""
    slots = asyncio.Semaphore(START_CONCURRENCY)

    async def one(item: Any) -> None:
        async with slots:
            await step(item)

    await asyncio.gather(*(one(item) for item in items))


async def bootstrap(
    config: SalonConfig,
    spaces: SpaceManager,
    agent_apis: Mapping[AgentId, MatrixAPI],
    store: Store,
    invitees: Sequence[UserId],
    peers: Sequence[UserId] = (),
    warm: WarmFacts | None = None,
) -> Topology:
    """Make the Space, lobby and agent rooms exist and be linked; record them in the
    store. ``warm``: what the last start found (see :mod:`salon.gateway.warm`): an
    agent whose recorded room and the lobby are among its kept rooms is taken as it
    is, without a request (:attr:`Topology.taken`, to be checked once ready)."""
    locale = config.locale
    agent_users = [api.user_id for api in agent_apis.values()]
    # Agents visit each other's rooms to delegate or answer a mention, invited then by
    # the room's owner (join_or_be_invited): inviting every agent into every room up
    # front cost N² requests. The peers' agents (other gateways) have no owner here to
    # ask, so the configured ones are invited, by their pinned user ids.
    visitors = list(peers)
    space_id: RoomId | None = None
    space_error: str | None = None
    try:
        space_id = await spaces.ensure_room(
            RoomSpec(
                alias_localpart=config.space.alias,
                name=config.space.name,
                topic=config.space.topic or responses.text("space_topic", locale),
                is_space=True,
                invite=list(invitees),
            )
        )
        await store.rooms.upsert(space_id, RoomKind.SPACE, alias=spaces.alias(config.space.alias))
    except MatrixError as e:
        # Degrade: agents still work in their rooms; `salon who` reports the Space missing.
        space_error = str(e)
        log.warning("space.unavailable", alias=spaces.alias(config.space.alias), error=str(e))

    lobby_id = await spaces.ensure_room(
        RoomSpec(
            alias_localpart=config.naming.lobby_alias,
            name=responses.text("lobby_name", locale),
            topic=responses.text("lobby_topic", locale),
            invite=[*agent_users, *invitees],
            initial_state=_encryption(config),
        )
    )
    await store.rooms.upsert(
        lobby_id, RoomKind.LOBBY, alias=spaces.alias(config.naming.lobby_alias)
    )

    # Each agent's rooms, asked once (or kept from the last start) and kept up to date.
    joined: dict[AgentId, set[RoomId]] = {}
    people = [*invitees, *visitors]
    if warm is not None and not warm.trusts(lobby_id, people):
        warm = None  # another lobby, other people: every agent is asked
    taken: dict[AgentId, RoomId] = {}  # agents taken as the last start left them

    async def agent_room(agent_id: AgentId, api: MatrixAPI) -> tuple[AgentId, RoomId]:
        kept = warm.rooms_of(api.user_id) if warm is not None else None
        if kept is not None and lobby_id in kept:
            alias = SpaceManager(api).alias(config.agent_room_alias_localpart(agent_id))
            if recorded := await _recorded_room(store, agent_id, api.user_id, alias, kept):
                joined[agent_id] = kept
                taken[agent_id] = recorded
                return agent_id, recorded
        joined[agent_id] = set(await api.joined_rooms())
        room_id = await ensure_agent_room(
            config, agent_id, api, store, lobby_id, people, joined=joined[agent_id]
        )
        return agent_id, room_id

    pairs = await asyncio.gather(*(agent_room(a, api) for a, api in agent_apis.items()))
    rooms = dict(pairs)
    linked: set[str] = set()
    if space_id is not None:
        kept_links = warm.linked if warm is not None and warm.space_id == space_id else set()
        try:
            await spaces.link(space_id, lobby_id)
            await _each(
                [(a, r) for a, r in rooms.items() if not (a in taken and r in kept_links)],
                lambda pair: link_agent_room(spaces, agent_apis[pair[0]], space_id, pair[1]),
            )
            linked = set(rooms.values())
        except MatrixError as e:
            space_error = f"linking rooms into the Space failed: {e}"
            log.warning("space.link_failed", error=str(e))
    # Only owners and people stay in agent rooms and chats (see voices).
    await leave_joined(spaces.api, list(rooms.values()))
    await visitors_leave(agent_apis, rooms, store, joined)
    await _leave_chats(spaces.api, agent_apis, store)
    users = {str(agent_apis[a].user_id): {str(r) for r in rs} for a, rs in joined.items()}
    facts = WarmFacts(space_id, lobby_id, sorted(people), linked, users)
    return Topology(space_id, space_error, lobby_id, rooms, facts, taken)


async def _leave_chats(
    router: MatrixAPI, agent_apis: Mapping[AgentId, MatrixAPI], store: Store
) -> None:
    """The router leaves the `!new` chats older versions kept it in, each once its
    agent has joined (a room nobody has joined is gone for good)."""
    joined = set(await router.joined_rooms())
    leaving: list[RoomId] = []
    for chat in await store.rooms.active_chats():
        api = agent_apis.get(AgentId(chat.agent_id or ""))
        if chat.room_id not in joined or api is None:
            continue
        try:
            await api.join(RoomId(chat.room_id))
        except MatrixError as e:
            log.warning("chat.agent_join_failed", room_id=chat.room_id, error=str(e))
            continue
        leaving.append(RoomId(chat.room_id))
    await leave_joined(router, leaving)


async def link_agent_room(
    spaces: SpaceManager, agent_api: MatrixAPI, space_id: RoomId, room_id: RoomId
) -> None:
    """List an agent's room in the Space (the router, in the Space) and name the Space
    its parent (the agent, in its own room: the router is not a member there)."""
    await spaces.add_child(space_id, room_id)
    await SpaceManager(agent_api).set_parent(room_id, space_id)


async def ensure_agent_room(
    config: SalonConfig,
    agent_id: AgentId,
    api: MatrixAPI,
    store: Store,
    lobby_id: RoomId,
    invitees: Sequence[UserId],
    known: Callable[[RoomId], None] | None = None,
    *,
    joined: set[RoomId] | None = None,
) -> RoomId:
    """An agent's own room (found or created by the agent itself, which owns it),
    joined by the agent with the lobby, and recorded in the store. ``invitees``:
    people and the peers' agents (visitors); never the router (see voices).
    ``known`` learns the room before anyone is invited, so the invitations are
    recognised as visits (an agent added by a reload). ``joined``: the agent's rooms,
    if known (kept up to date); a room recorded as its own that it is in is taken
    as it is, without looking its alias up."""
    agent = config.agents[agent_id]
    alias_localpart = config.agent_room_alias_localpart(agent_id)
    spaces = SpaceManager(api)
    alias = spaces.alias(alias_localpart)
    room_id = await _recorded_room(store, agent_id, api.user_id, alias, joined)
    room_id = room_id or await spaces.ensure_room(
        RoomSpec(
            alias_localpart=alias_localpart,
            name=agent.display_label,
            topic=responses.text(
                "agent_room_topic",
                config.locale,
                label=agent.display_label,
                description=agent.description or agent_id,
            ),
            # The agent owns its room: it keeps its heartbeat state event there. (When
            # it creates the room it is the creator; older rooms the router created.)
            power_users={api.user_id: 100},
            initial_state=_encryption(config),
        )
    )
    if joined is not None:
        joined.add(room_id)  # found or made: the agent is in it
    await _ensure_joined(api, [room_id, lobby_id], spaces.server_name, joined)
    if known is not None:
        known(room_id)
    await spaces.invite_missing(room_id, [u for u in invitees if u != api.user_id])
    # Its owner recorded: once the agent is gone, the router is brought in by it (handover).
    await store.rooms.upsert(
        room_id,
        RoomKind.AGENT,
        agent_id=agent_id,
        alias=alias,
        owner=api.user_id,
    )
    return room_id


async def _recorded_room(
    store: Store, agent_id: AgentId, owner: UserId, alias: str, joined: set[RoomId] | None
) -> RoomId | None:
    """The agent's own room as the store recorded it, if the agent owns it under the
    alias it has now and is in it (a warm start then spares the alias look-up)."""
    if joined is None:
        return None
    record = await store.rooms.agent_room(agent_id)
    if record is None or record.owner != owner or record.alias != alias:
        return None
    return RoomId(record.room_id) if RoomId(record.room_id) in joined else None
