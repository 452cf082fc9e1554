"""Building a running gateway, step by step, in one exit stack.

Read top to bottom, :func:`assemble` is the start order; each resource is a step
of :mod:`salon.app.steps` entered in ``stack``, so the stop order is its reverse
(the API stops first, the store closes last) and a start failing midway tears
down what it built. The :class:`RunningGateway` exists only once all succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

import structlog

from salon.api.context import ApiContext
from salon.app.changes import SessionAgents
from salon.app.crypto_key import operator_device
from salon.app.dashboard_hooks import agent_info, reload_now
from salon.app.files import wire_files
from salon.app.modes import authenticator, event_source, follow_outages, lighten_start, listener
from salon.app.running import GatewayState, Homeserver, Pipeline, RunningGateway
from salon.app.status import loop_states, status_publisher
from salon.app.steps import (
    built_backends,
    heartbeats,
    hosting,
    http_session,
    listening_early,
    mcp_servers,
    opened_store,
    probing,
    reloading,
    routing,
    running_turns,
    supervising,
    syncing,
)
from salon.app.surface import serving_api
from salon.app.warm_start import checking, rooms_at_start
from salon.commands.chats import Chats
from salon.commands.context import AgentViews, TurnHooks, UserRoles
from salon.commands.handlers import CommandHandlers
from salon.config.models import SalonConfig
from salon.coordination.protocol import REQUEST, STATUS
from salon.gateway.approvals import ApprovalDesk
from salon.gateway.cluster import clustering, holder_for
from salon.gateway.cron import CronScheduler
from salon.gateway.delegated_turns import Coordinator
from salon.gateway.dispatcher import Dispatcher, DispatchLimits
from salon.gateway.identities import identity_specs, login_all
from salon.gateway.invites import InviteJoiner
from salon.gateway.live import LiveAgents, LiveParts
from salon.gateway.message_context import MessageContexts
from salon.gateway.messages import MessageHandler, ReactionHandler, session_key
from salon.gateway.registry import HostedAgents, Identities
from salon.gateway.reload import Reloader
from salon.gateway.retention import start_retention
from salon.gateway.roomfacts import RoomFacts
from salon.gateway.sessions import Janitor
from salon.gateway.visits import VisitEnder
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.ratelimit import RetryPolicy
from salon.matrix.space import SpaceManager
from salon.roster import Roster
from salon.store import Store
from salon.store.leases import Holder
from salon.supervisor import Backoff
from salon.turns.runner import TurnRunner
from salon.turns.settings import TurnSettings
from salon.turns.slots import SlotLimits, TurnSlots
from salon.turns.voices import RoomVoices, is_visit

if TYPE_CHECKING:
    from salon.app.gateway import Gateway

log = structlog.get_logger("salon.gateway")


@dataclass(frozen=True)
class Plan:
    """What a gateway is asked to run: the config as written and how to run it."""

    config: SalonConfig
    name: str
    invite: Sequence[UserId]  # people invited to the Space, lobby and agent rooms
    ready_timeout_s: float
    load: Callable[[], SalonConfig]  # reads the config again (a reload)
    watch: Path | None  # the file whose changes reload it
    # Values of variables the config names, given instead of the environment (which
    # every backend and child process would inherit).
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


async def assemble(
    stack: AsyncExitStack, plan: Plan, sessions: SessionAgents, gateway: Gateway
) -> RunningGateway:
    """Start every part of the gateway in ``stack``; returns once each identity has
    synced once. (``gateway`` is what the reloader and the API change.)"""
    hs = plan.config.homeserver
    assert hs is not None
    store = await stack.enter_async_context(
        opened_store(plan.config.store.url, plan.config.store.pool_size)
    )
    # Entered after the store, left before it closes: this process's claims go back
    # once its turns and dispatcher stopped.
    cluster = await stack.enter_async_context(clustering(store, holder_for(plan.config)))
    # The session agents still active run alongside the configured ones.
    config = await sessions.compose(store, plan.config)
    roster = Roster.from_config(config)
    backends = await stack.enter_async_context(built_backends(config, roster))
    polls = 0 if hs.mode == "appservice" else len(roster.hosted()) + 1  # and the router's
    session = await stack.enter_async_context(http_session(hs.request_timeout_s, polls))
    hs_up = await stack.enter_async_context(probing(hs.url, session, hs.probe_interval_s))
    auth = authenticator(config, session, store, _retry(config), hs_up, plan.secrets)
    # Appservice mode listens before anyone logs in: registering users and publishing
    # their keys makes the homeserver push, and finding us down it drops room keys.
    early = listener(config, roster, store, plan.secrets)
    await stack.enter_async_context(listening_early(early))
    specs = identity_specs(config)
    log.info("gateway.login", identities=len(specs))
    apis = await login_all(auth, specs, jitter_s=config.sync.startup_jitter_s, profiles=store.kv)
    created_at = {u: await store.identities.created_at(u) for u in apis}
    router_api = apis[roster.router_user_id]
    backoff = Backoff(config.sync.backoff_initial_s, config.sync.backoff_max_s)
    # /sync per identity, or the appservice's listener (homeserver.mode).
    source = event_source(config, apis, store, auth, backoff, early)
    follow_outages(source, hs_up)
    spaces = SpaceManager(router_api)
    homeserver_now = (spaces, apis, auth)
    topology = await rooms_at_start(config, roster, homeserver_now, store, plan.invite, source)
    where = {
        m.agent_id: (apis[m.user_id], topology.agent_rooms[m.agent_id]) for m in roster.hosted()
    }
    hosted = await stack.enter_async_context(
        hosting(config, roster, where, backends, store, plan.name)
    )
    routes = await stack.enter_async_context(routing(config, roster))
    runner = await stack.enter_async_context(
        running_turns(_runner(config, store, hosted, cluster.holder))
    )

    mcp = await stack.enter_async_context(mcp_servers(config, runner))
    # The handlers read the registry (or its views), never a copy of it.
    coordinator = Coordinator(
        config,
        store,
        roster=roster,
        agent_apis=hosted.apis,
        agent_rooms=hosted.rooms,
        runner=runner,
    )
    coordinator.manager.use_remotes(config.a2a_agents, plan.secrets, config.delegation.hop_limit)
    stack.push_async_callback(coordinator.manager.stop_calls)
    commands = CommandHandlers(
        store,
        agents=AgentViews(hosted.members, hosted.apis, cast("Mapping[str, str]", hosted.models)),
        chats=Chats(store, router_api, encrypted=config.encryption.encrypts("chat")),
        turns=TurnHooks(runner.stop_in_room, session_key),
        delegations=coordinator.manager,
        roles=UserRoles(
            [roster.router_user_id, *(m.user_id for m in roster)],
            # The running config's: a reload's access changes apply to commands too.
            is_admin=lambda user: gateway.config.access.is_admin(user),
        ),
    )
    identities = Identities(router_api, hosted)
    facts = RoomFacts(identities, roster)
    voices = RoomVoices(router_api, hosted.apis, hosted.rooms)
    idle_s = config.space.visit_idle_s
    visits = VisitEnder(store, hosted.apis, hosted.rooms, idle_s, facts.forget)
    coordinator.manager.on_visit = visits.use
    invites = InviteJoiner(
        store,
        identities,
        # The running config's policy: a reload's access changes apply here too.
        allowed=lambda sender: roster.is_ours(sender) or gateway.config.access.is_allowed(sender),
        on_joined=facts.forget,
        visiting=lambda invite: is_visit(roster, voices, invite),
    )
    dispatcher = Dispatcher(
        store,
        roster=roster,
        created_at=created_at,
        on_invite=invites.record,
        limits=DispatchLimits.from_config(config),
        holder=cluster.holder,
    )
    messages = MessageHandler(
        MessageContexts(store, roster, config.access, facts, voices, config.locale),
        router=routes.current,
        commands=commands,
        runner=runner,
        agent_apis=hosted.apis,
        on_visit=visits.use,
    )
    links = wire_files(config, runner, messages, hosted.apis)
    routes.users.append(messages)
    reactions = ReactionHandler(runner, roster, config.access)
    # Tool calls that wait for a person's OK (the running config's patterns and admins).
    approvals = ApprovalDesk(
        store,
        hosted.apis,
        lambda: gateway.config,
        lambda user: gateway.config.access.is_admin(user),
        runner.delivery,
    )
    runner.approver_for = approvals.approver_for
    reactions.approvals = approvals.on_reaction
    commands.approvals = approvals
    dispatcher.add_event_handler("m.room.message", messages)
    dispatcher.add_event_handler("m.reaction", reactions)
    dispatcher.add_event_handler(REQUEST, coordinator.on_request)
    dispatcher.add_event_handler(STATUS, coordinator.on_status)
    dispatcher.on_start(runner.resume_unfinished)
    cron = CronScheduler.from_config(
        config,
        store,
        runner,
        agent_apis=hosted.apis,
        agent_rooms=hosted.rooms,
        agent_users=hosted.users,
        server_name=hs.server_name,
        on_visit=visits.use,
    )

    lighten_start(source, invites, lambda: bool(runner.in_flight()))
    await stack.enter_async_context(
        syncing(source, dispatcher, plan.ready_timeout_s, alone=config.store.is_sqlite)
    )
    busy = partial(_busy, runner)
    await stack.enter_async_context(
        checking(source, config, store, topology, (router_api, hosted), busy)
    )
    supervisor = await stack.enter_async_context(supervising(backoff, pause=hs_up.pause))
    supervisor.leadership = cluster.leadership
    cluster.resume, cluster.wake = runner.resume_unfinished, partial(_wake, dispatcher, invites)
    supervisor.spawn("cluster", cluster.run)
    loops = partial(loop_states, source, supervisor, mcp)
    supervisor.spawn("dispatcher", dispatcher.run)
    supervisor.spawn("cron", cron.run)
    # One process joins invitations, ends visits and publishes the status for all
    # (any records an invitation; the leader's joiner finds it at the next beat).
    supervisor.spawn("invites", invites.run, leader_only=True)
    await coordinator.start(supervisor)
    supervisor.spawn(
        "status",
        status_publisher(
            store,
            plan.name,
            loops,
            access=lambda: gateway.config.access.describe(),
            identities=lambda: [router_api, *hosted.apis.values()],
        ),
        leader_only=True,
    )
    await stack.enter_async_context(heartbeats(hosted, supervisor, runner))
    reloader = await stack.enter_async_context(
        reloading(Reloader(gateway, plan.load, watch=plan.watch), supervisor)
    )
    supervisor.spawn("janitor", Janitor(store, reloader.request).run, leader_only=True)
    start_retention(config.store, store, supervisor)
    if idle_s is not None:
        supervisor.spawn("visits", visits.run, leader_only=True)

    rooms_now = replace(topology, agent_rooms=hosted.rooms)
    api = None
    if config.api is not None:
        context = ApiContext(
            gateway=plan.name,
            roster=roster,
            store=store,
            runner=runner,
            router=routes.current,
            delegations=coordinator.manager,
            router_api=router_api,
            agent_apis=cast("Mapping[str, MatrixAPI]", hosted.apis),
            agent_rooms=cast("Mapping[str, str]", hosted.rooms),
            lobby_id=str(topology.lobby_id),
            loops=loops,
            locale=config.locale,
            spawn=gateway.spawn_session,
            links=links,
            agent_info=agent_info(gateway, store),
            reload=reload_now(reloader),
            approvals=approvals,
            a2a_served=lambda agent_id: gateway.config.a2a_served(agent_id),
        )
        api = await stack.enter_async_context(
            serving_api(
                config.api,
                hs.url,
                session,
                context,
                plan.secrets,
                operator_device(config, store.crypto, plan.secrets),
            )
        )
        links.base_url = api.url
    homeserver = Homeserver(session, auth, spaces, source)
    live = LiveAgents(
        LiveParts(
            store=store,
            auth=auth,
            spaces=spaces,
            source=source,
            supervisor=supervisor,
            runner=runner,
            hosted=hosted,
            topology=rooms_now,
            invitees=list(plan.invite),
            gateway=plan.name,
        )
    )
    return RunningGateway(
        config=config,
        store=store,
        roster=roster,
        hosted=hosted,
        state=GatewayState(rooms_now, router_api, hosted.apis, hosted.users),
        homeserver=homeserver,
        pipeline=Pipeline(
            dispatcher, runner, coordinator, commands, messages, reactions, cron, routes
        ),
        supervisor=supervisor,
        reloader=reloader,
        api=api,
        live=live,
        mcp=mcp,
    )


def _wake(dispatcher: Dispatcher, invites: InviteJoiner) -> None:
    """At each cluster beat: read the inbox and the invitations again (another process
    may have admitted or recorded something)."""
    dispatcher.wake()
    invites.wake()


def _retry(config: SalonConfig) -> RetryPolicy:
    return RetryPolicy(
        max_retries=config.ratelimit.max_retries,
        max_wait_s=config.ratelimit.max_wait_s,
        default_wait_s=config.ratelimit.default_wait_s,
    )


def _busy(runner: TurnRunner) -> bool:
    return bool(runner.in_flight())


def _runner(config: SalonConfig, store: Store, hosted: HostedAgents, holder: Holder) -> TurnRunner:
    turns = config.turns
    return TurnRunner(
        store,
        hosted.runtimes,
        hosted.apis,
        settings=TurnSettings.from_config(config),
        slots=TurnSlots(
            SlotLimits(
                turns.concurrency,
                turns.per_agent,
                turns.per_sender,
                turns.max_waiting_per_sender,
                turns.max_waiting_per_agent,
            )
        ),
        holder=holder,
    )
