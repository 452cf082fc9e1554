"""Appservice mode's warm start: the kept facts read before the rooms are set up,
checked in the background once the gateway is ready, and kept again (see
:mod:`salon.gateway.warm`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial

import structlog

from salon._exceptions import MatrixError
from salon.config.models import SalonConfig
from salon.gateway.bootstrap import Topology, bootstrap, ensure_agent_room, link_agent_room
from salon.gateway.handover import take_over_orphans
from salon.gateway.identities import log_in_former
from salon.gateway.registry import HostedAgents
from salon.gateway.warm import Unchecked, WarmFacts, check_after_start, load_facts, save_facts
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.appservice import AppserviceSource
from salon.matrix.login import Authenticator
from salon.matrix.source import IdentitySource
from salon.matrix.space import SpaceManager
from salon.pacing import Backstage
from salon.roster import Roster
from salon.store import Store

log = structlog.get_logger("salon.app.warm_start")

CHECK_RATE_PER_S = 50.0
"""Identities asked their rooms again per second at most, after a warm start."""
CHECK_GRACE_S = 2.0
CHECK_MAX_DEFER_S = 5.0


async def kept_facts(
    source: IdentitySource | None, store: Store, router: UserId
) -> WarmFacts | None:
    """The facts the last start kept; None in client mode (each identity syncs anyway)."""
    if not isinstance(source, AppserviceSource):
        return None
    facts = await load_facts(store.kv, router)
    if facts is None or not facts.clean:
        return None  # none, or the last run did not stop (killed): every agent is asked
    # Until this run stops cleanly, they are not to be trusted (rooms joined while it
    # runs are not in them).
    await save_facts(store.kv, router, replace(facts, clean=False))
    return facts


def seed_known(
    source: IdentitySource, topology: Topology, kept: WarmFacts | None, router: UserId
) -> None:
    """Hand the listener each identity's rooms as the start knows them (no second
    question per agent; the router's as kept, if they were)."""
    if not isinstance(source, AppserviceSource) or topology.facts is None:
        return
    known: dict[UserId, set[str]] = {UserId(u): r for u, r in topology.facts.joined.items()}
    router_rooms = kept.joined.get(router) if kept is not None else None
    if router_rooms is not None:
        known[router] = router_rooms
    source.known = known


async def rooms_at_start(
    config: SalonConfig,
    roster: Roster,
    homeserver: tuple[SpaceManager, Mapping[UserId, MatrixAPI], Authenticator],
    store: Store,
    invite: Sequence[UserId],
    source: IdentitySource,
) -> Topology:
    """The Space, the lobby and the agent rooms (found or made, or on a warm start
    taken as the last start kept them); the rooms of agents removed while the
    gateway was down go to the router (handover). The listener learns each
    identity's rooms from here."""
    spaces, apis, auth = homeserver
    # One process on a SQLite store; processes sharing a PostgreSQL store each hear
    # only the transactions sent to it, so one's rooms are not the others'.
    alone = config.store.is_sqlite
    kept = await kept_facts(source, store, roster.router_user_id) if alone else None
    agent_apis = {m.agent_id: apis[m.user_id] for m in roster.hosted()}
    peers = [m.user_id for m in roster.peers()]
    topology = await bootstrap(config, spaces, agent_apis, store, invite, peers, kept)
    space_id = topology.space_id
    await take_over_orphans(
        spaces.api,
        store,
        {*agent_apis, *config.peers},
        partial(log_in_former, auth, store.identities, config),
        unlink=partial(spaces.unlink, space_id) if space_id else None,
        visitors=agent_apis,
    )
    log.info(
        "gateway.rooms_ready",
        space=topology.space_id,
        space_error=topology.space_error,
        agents=len(topology.agent_rooms),
        taken_from_store=len(topology.taken),
    )
    seed_known(source, topology, kept, roster.router_user_id)
    return topology


@asynccontextmanager
async def checking(
    source: IdentitySource,
    config: SalonConfig,
    store: Store,
    topology: Topology,
    identities: tuple[MatrixAPI, HostedAgents],
    busy: Callable[[], bool],
) -> AsyncIterator[None]:
    """After a warm start: each identity taken from the store (``identities``: the
    router's API and the hosted agents) is asked its rooms again in the background, behind
    the replies (``busy``), drift is repaired, and the facts are kept again; at the
    end (stop) they are kept as the listener knows them then."""
    if not isinstance(source, AppserviceSource) or topology.facts is None:
        yield
        return
    router, hosted = identities
    agents = hosted.apis
    facts = topology.facts
    asked: list[tuple[AgentId | None, MatrixAPI]] = [(a, agents[a]) for a in topology.taken]
    if router.user_id not in facts.joined and router.user_id in source.known:
        asked.insert(0, (None, router))  # its rooms were kept too
    task: asyncio.Task[None] | None = None
    checked = asyncio.Event()  # every identity taken unasked was asked again
    if not asked:
        checked.set()
    else:
        door = Backstage(
            busy, rate_per_s=CHECK_RATE_PER_S, max_defer_s=CHECK_MAX_DEFER_S, grace_s=CHECK_GRACE_S
        ).turn

        async def repair(agent_id: AgentId, rooms: set[RoomId]) -> RoomId | None:
            api = agents[agent_id]
            return await _repair(config, store, topology, (router, api), agent_id, rooms)

        async def check() -> None:
            unchecked = Unchecked(topology.taken, topology.lobby_id, partial(moved, hosted))
            try:
                n = await check_after_start(asked, unchecked, source.relearn, repair, door)
            except MatrixError:
                return  # logged; asked again at the next start
            log.info("warm.checked", identities=len(asked), repaired=n)
            checked.set()

        task = asyncio.create_task(check(), name="warm-start-check")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):  # a store closing: the next start asks
            await _keep(store, router.user_id, facts, source, clean=checked.is_set())


async def _repair(
    config: SalonConfig,
    store: Store,
    topology: Topology,
    apis: tuple[MatrixAPI, MatrixAPI],
    agent_id: AgentId,
    rooms: set[RoomId],
) -> RoomId | None:
    """The cold path for one agent: its room found (or made) and joined with the
    lobby, people invited, the room linked into the Space."""
    assert topology.facts is not None
    router, api = apis
    people = [UserId(u) for u in topology.facts.invitees]
    try:
        room_id = await ensure_agent_room(
            config, agent_id, api, store, topology.lobby_id, people, joined=rooms
        )
        if topology.space_id is not None:
            await link_agent_room(SpaceManager(router), api, topology.space_id, room_id)
    except MatrixError as e:
        log.error("warm.repair_failed", agent=agent_id, error=str(e))
        return None
    return room_id


def moved(hosted: HostedAgents, agent_id: AgentId, room_id: RoomId) -> None:
    """An agent's room was removed while the gateway was down and made again: the
    running agent (its heartbeat, the room index) moves to the new one."""
    agent = hosted.get(agent_id)
    if agent is not None and agent.room_id != room_id:
        agent.heartbeat.room_id = room_id
        hosted.swap(replace(agent, room_id=room_id))


async def _keep(
    store: Store, router: UserId, facts: WarmFacts, source: AppserviceSource, *, clean: bool
) -> None:
    """Keep the rooms as the listener knows them at a stop (``clean``: the check
    after a warm start, if any, had finished: they may be trusted)."""
    joined = {str(u): set(r) for u, r in source.members.by_user().items()}
    kept = WarmFacts(facts.space_id, facts.lobby_id, facts.invitees, facts.linked, joined, clean)
    await save_facts(store.kv, router, kept)
