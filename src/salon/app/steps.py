"""The start-up steps of a gateway, each one resource: set up, yield, tear down.

:func:`salon.app.assemble.assemble` enters them in order in one
:class:`~contextlib.AsyncExitStack`, so a stop (or a start failing midway) tears
down what was built in reverse: the stop order follows from the start order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp

from salon.agents.backend import Backend
from salon.agents.mcp_hub import AgentTools, McpHub
from salon.agents.registry import build_backend, close_backend
from salon.app.running import Routing
from salon.config.models import SalonConfig
from salon.coordination.heartbeat import all_offline
from salon.gateway.dispatcher import Dispatcher
from salon.gateway.registry import HostedAgents, make_hosted
from salon.gateway.reload import Reloader
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.appservice import AppserviceSource
from salon.matrix.reachability import Reachability
from salon.matrix.source import IdentitySource
from salon.pacing import Backstage
from salon.roster import Roster
from salon.routing.router import Router
from salon.store import Store
from salon.supervisor import Backoff, Pause, Supervisor
from salon.turns.runner import TurnRunner
from salon.turns.spec import TurnSpec


@asynccontextmanager
async def opened_store(url: str, pool_size: int) -> AsyncIterator[Store]:
    store = await Store.open(url, pool_size=pool_size)
    try:
        yield store
    finally:
        await store.close()


POOL_SPARE = 100
"""Connections for requests other than the /sync long-polls (aiohttp's default)."""


@asynccontextmanager
async def http_session(
    timeout_s: float, long_polls: int = 0
) -> AsyncIterator[aiohttp.ClientSession]:
    """The one HTTP session to the homeserver. ``long_polls``: connections held by
    /sync long-polls (client mode: one per identity), on top of :data:`POOL_SPARE`:
    with aiohttp's 100 for a hundred agents' long-polls, every reply waited up to
    30 s for one of them to return."""
    # Every request bounded (aiohttp's default is 300 s); /sync adds its long-poll.
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(limit=POOL_SPARE + long_polls),
    )
    try:
        yield session
    finally:
        await session.close()


@asynccontextmanager
async def probing(
    url: str, session: aiohttp.ClientSession, interval_s: float
) -> AsyncIterator[Reachability]:
    """One cheap probe of the homeserver, run only while it is down, waking every
    waiting sender and loop as soon as it answers again."""
    reachability = Reachability(url, session, interval_s=interval_s)
    try:
        yield reachability
    finally:
        await reachability.close()


@asynccontextmanager
async def built_backends(
    config: SalonConfig, roster: Roster
) -> AsyncIterator[dict[AgentId, Backend]]:
    """Every hosted agent's backend, built before the homeserver is asked anything (an
    unusable agent config fails first). The registry takes them over; those still
    here at the end (a start that failed before) are closed."""
    backends: dict[AgentId, Backend] = {}
    try:
        for member in roster.hosted():
            backends[member.agent_id] = build_backend(config.agents[member.agent_id])
        yield backends
    finally:
        await asyncio.gather(*(close_backend(b) for b in backends.values()))


@asynccontextmanager
async def hosting(
    config: SalonConfig,
    roster: Roster,
    where: Mapping[AgentId, tuple[MatrixAPI, RoomId]],
    backends: dict[AgentId, Backend],
    store: Store,
    gateway: str,
) -> AsyncIterator[HostedAgents]:
    """The registry of hosted agents, one record per agent (``where``: its identity
    and room). At the end every agent says offline, then its backend closes."""
    hosted = HostedAgents(roster)
    try:
        for member in roster.hosted():
            backend = backends.pop(member.agent_id)
            hosted.swap(
                make_hosted(
                    config, member, where[member.agent_id], backend, store.sessions, gateway
                )
            )
        yield hosted
    finally:
        await all_offline([h.heartbeat for h in hosted])
        await asyncio.gather(*(close_backend(h.backend) for h in hosted))


@asynccontextmanager
async def routing(config: SalonConfig, roster: Roster) -> AsyncIterator[Routing]:
    """Who answers a message (a reload swaps the router; the current one closes)."""
    routes = Routing(Router.from_config(config, roster))
    try:
        yield routes
    finally:
        await routes.current.aclose()


@asynccontextmanager
async def mcp_servers(config: SalonConfig, runner: TurnRunner) -> AsyncIterator[McpHub]:
    """The MCP tool servers: ``startup`` ones now, the rest at their first turn; every
    child stopped at the end (the watchdog kills them if this process is killed)."""
    hub = McpHub(config)

    async def tools_for(spec: TurnSpec) -> AgentTools | None:
        return await hub.tools_for(spec.agent_id)

    runner.tools_for = tools_for
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


@asynccontextmanager
async def running_turns(runner: TurnRunner) -> AsyncIterator[TurnRunner]:
    """The turn runner; at the end, turns still running are cancelled (their ledger
    rows stay open and resume on the next start)."""
    try:
        yield runner
    finally:
        await runner.stop()


@asynccontextmanager
async def listening_early(source: AppserviceSource | None) -> AsyncIterator[None]:
    """Appservice mode: the listener takes connections before any identity logs in
    (registering users and uploading device keys make the homeserver push) and the
    rooms are set up, parking transactions until the dispatcher is there. A homeserver
    that finds it down backs off for minutes, and drops to-device messages (room keys)
    until it has sent again every transaction it kept."""
    if source is None:
        yield
        return
    await source.listen()
    try:
        yield
    finally:
        await source.stop()


@asynccontextmanager
async def syncing(
    source: IdentitySource, dispatcher: Dispatcher, ready_timeout_s: float, *, alone: bool
) -> AsyncIterator[IdentitySource]:
    """The event source admitting into ``dispatcher``: every identity's sync loop
    (ready once each has synced once) or the appservice's listener. ``alone``: no other
    gateway shares the store."""
    await source.start(dispatcher)
    try:
        await source.wait_ready(ready_timeout_s)
        yield source
    finally:
        if isinstance(source, AppserviceSource) and alone:
            await source.park()  # listening on until the store closes (see park)
        else:
            # Beside other gateways the port closes: the load balancer sends to one
            # that admits at once (another takes what is parked only after a minute).
            await source.stop()


@asynccontextmanager
async def supervising(backoff: Backoff, pause: Pause | None = None) -> AsyncIterator[Supervisor]:
    """The supervisor of the gateway's loops; at the end every loop is cancelled."""
    supervisor = Supervisor(backoff, pause=pause)
    try:
        yield supervisor
    finally:
        await supervisor.stop()


@asynccontextmanager
async def heartbeats(
    hosted: HostedAgents, supervisor: Supervisor, runner: TurnRunner
) -> AsyncIterator[None]:
    """Each hosted agent's heartbeat loop, told when its turns turn slow or end (the
    registry's teardown says offline, once the loops and the turns are over). The
    first beats go out paced, behind the replies (:func:`first_beats`)."""
    pacer = first_beats(hosted, runner)
    for agent in hosted:
        agent.heartbeat.before_first = pacer.turn
        supervisor.spawn(f"heartbeat:{agent.agent_id}", agent.heartbeat.run, leader_only=True)

    def on_slow(agent_id: AgentId) -> None:
        agent = hosted.get(agent_id)
        if agent is not None:
            agent.heartbeat.busy()

    def on_idle(agent_id: AgentId) -> None:
        agent = hosted.get(agent_id)
        if agent is not None:
            agent.heartbeat.idle()

    runner.on_slow, runner.on_idle = on_slow, on_idle
    yield


FIRST_BEATS_GRACE_S = 2.0
"""No first heartbeat this soon after a start: the messages that waited come first."""
FIRST_BEATS_MIN_RATE = 10.0
"""First heartbeats per second at least (more with many agents: see first_beats)."""
FIRST_BEATS_UNPACED = 32
"""Up to this many agents the first heartbeats go at once: they hold nothing back
worth the while, and `salon who` right after a start shows the agents online."""


def first_beats(hosted: HostedAgents, runner: TurnRunner) -> Backstage:
    """The door of the first heartbeats after a start: a state event costs the
    homeserver more than a message, and a hundred at once held every reply behind
    them. After a short grace, at a rate that sends them all within one interval,
    never while turns run (at most one interval late: a beat is due)."""
    interval_s = min((a.heartbeat.interval_s for a in hosted), default=30.0)
    if len(hosted) <= FIRST_BEATS_UNPACED:
        return Backstage(lambda: False, rate_per_s=1e9, max_defer_s=0.0)
    return Backstage(
        lambda: bool(runner.in_flight()),
        rate_per_s=max(FIRST_BEATS_MIN_RATE, len(hosted) / interval_s),
        max_defer_s=interval_s,
        grace_s=min(FIRST_BEATS_GRACE_S, interval_s / 2),
    )


@asynccontextmanager
async def reloading(reloader: Reloader, supervisor: Supervisor) -> AsyncIterator[Reloader]:
    """The reload loop, and SIGHUP asking it to reload."""
    supervisor.spawn("reload", reloader.run)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, reloader.request)
    try:
        yield reloader
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
