"""The gateway: boots identities, rooms, the event source and the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp
import structlog

from salon.agents.backend import Backend
from salon.agents.registry import build_backend, close_backend
from salon.agents.runtime import AgentRuntime
from salon.api.server import ApiServer
from salon.app.changes import LiveChanges
from salon.app.status import StatusReports
from salon.app.stopping import GracefulStop, on_stop_signals
from salon.app.surface import start_api
from salon.commands.chats import Chats
from salon.commands.handlers import CommandHandlers
from salon.config.models import SalonConfig
from salon.coordination.heartbeat import Heartbeat
from salon.coordination.protocol import REQUEST, STATUS
from salon.gateway.bootstrap import Topology, bootstrap
from salon.gateway.cron import CronScheduler
from salon.gateway.delegated_turns import Coordinator
from salon.gateway.dispatcher import Dispatcher
from salon.gateway.handover import take_over_orphans
from salon.gateway.identities import identity_specs, log_in_former, login_all
from salon.gateway.invites import InviteJoiner
from salon.gateway.live import Parts, log_access_policy
from salon.gateway.messages import MessageHandler, ReactionHandler, session_key
from salon.gateway.reload import Reloader
from salon.gateway.retention import max_age_ms, start_retention
from salon.gateway.roomfacts import RoomFacts
from salon.gateway.sessions import Janitor
from salon.gateway.visits import VisitEnder
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.delivery import Delivery
from salon.matrix.login import Authenticator
from salon.matrix.ratelimit import RetryPolicy
from salon.matrix.space import SpaceManager
from salon.matrix.sync import ClientSyncSource
from salon.roster import Roster
from salon.routing.router import Router
from salon.store import Store
from salon.store.session_agents import SessionAgent
from salon.supervisor import Backoff, Supervisor
from salon.turns.runner import TurnPolicy, TurnRunner
from salon.turns.runtimes import make_runtime, model_name
from salon.turns.slots import SlotLimits, TurnSlots
from salon.turns.stream import StreamLimits
from salon.turns.voices import RoomVoices, is_visit

log = structlog.get_logger("salon.gateway")


@dataclass
class GatewayState:
    """What a running gateway is made of (for the CLI, status and tests)."""

    topology: Topology
    router: MatrixAPI
    agent_apis: dict[AgentId, MatrixAPI]
    agent_users: dict[AgentId, UserId] = field(default_factory=dict)


class Gateway(GracefulStop, StatusReports, LiveChanges):
    """One process hosting many agents on one homeserver."""

    def __init__(
        self,
        config: SalonConfig,
        *,
        invite: Sequence[UserId] = (),
        name: str | None = None,
        ready_timeout_s: float = 60.0,
        load: Callable[[], SalonConfig] | None = None,
        watch: Path | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """``load`` reads the config again (a reload: SIGHUP, `salon reload`, or the file
        ``watch`` changing); without it the running config never changes. ``secrets``:
        values of variables the config names, given here instead of in the environment
        (which every backend and child process would inherit)."""
        if config.homeserver is None:
            raise ValueError("config.homeserver is required")
        self.config = config
        self.name = name or socket.gethostname()
        self._invite = [UserId(u) for u in (*config.access.admins, *invite)]
        self._ready_timeout = ready_timeout_s
        self.state: GatewayState | None = None
        self.store: Store | None = None
        self._session: aiohttp.ClientSession | None = None
        self._source: ClientSyncSource | None = None
        self._dispatcher: Dispatcher | None = None
        self._runner: TurnRunner | None = None
        self._invites: InviteJoiner | None = None
        self.roster: Roster | None = None
        self.api: ApiServer | None = None
        self._supervisor: Supervisor | None = None
        self._beats: dict[AgentId, Heartbeat] = {}
        self._load = load
        self._file_config = config  # the config as written (before session agents)
        self.session_agents: dict[str, SessionAgent] = {}
        self.ended_sessions: set[str] = set()  # session agents the last compose() dropped
        self._watch = watch
        self._parts: Parts | None = None
        self._cron: CronScheduler | None = None
        self.reloader: Reloader | None = None
        self._backends: dict[AgentId, Backend] = {}
        self._router: Router | None = None
        self.coordinator: Coordinator | None = None
        self._stop_now = asyncio.Event()  # a graceful shutdown is to end at once
        self.secrets: Mapping[str, str] = dict(secrets or {})

    async def start(self) -> GatewayState:
        """Boot everything; returns once every identity has synced once."""
        hs = self.config.homeserver
        assert hs is not None
        self.store = store = await Store.open(self.config.store.url)
        # The session agents still active run alongside the configured ones.
        self.config = config = await self.compose(self.config)
        roster = Roster.from_config(config)
        # Backends before the homeserver: an unusable agent config fails first.
        backends: dict[AgentId, Backend] = {
            m.agent_id: build_backend(config.agents[m.agent_id]) for m in roster.hosted()
        }
        self._backends = backends
        specs = identity_specs(config)
        runtimes = {a: self._runtime(config, a, backend) for a, backend in backends.items()}
        self._session = aiohttp.ClientSession()
        policy = RetryPolicy(
            max_retries=config.ratelimit.max_retries,
            max_wait_s=config.ratelimit.max_wait_s,
            default_wait_s=config.ratelimit.default_wait_s,
        )
        auth = Authenticator(hs.url, hs.server_name, self._session, store.identities, policy)
        log.info("gateway.login", identities=len(specs))
        apis = await login_all(auth, specs, jitter_s=config.sync.startup_jitter_s)
        created_at = {u: await store.identities.created_at(u) for u in apis}
        router = apis[roster.router_user_id]
        agent_apis = {m.agent_id: apis[m.user_id] for m in roster.hosted()}
        agent_users = {m.agent_id: m.user_id for m in roster.hosted()}

        spaces = SpaceManager(router)
        topology = await bootstrap(
            config,
            spaces,
            agent_apis,
            store,
            self._invite,
            peers=[m.user_id for m in roster.peers()],
        )
        # Rooms of agents removed while the gateway was down get the router (handover).
        space_id = topology.space_id
        await take_over_orphans(
            router,
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
        )
        voices = RoomVoices(router, agent_apis, topology.agent_rooms)
        replies, turns = config.replies, config.turns
        limits = StreamLimits(
            replies.edit_interval_s,
            replies.max_edits,
            replies.max_message_chars,
            max_reply_chars=turns.max_reply_chars,
        )
        runner = TurnRunner(
            store,
            runtimes,
            agent_apis,
            limits=limits,
            policy=TurnPolicy(
                max_attempts=replies.max_attempts,
                deadline_s=turns.deadline_s,
                typing_after_s=replies.typing_after_s,
            ),
            slots=TurnSlots(
                SlotLimits(
                    turns.concurrency,
                    turns.per_agent,
                    turns.per_sender,
                    turns.max_waiting_per_sender,
                    turns.max_waiting_per_agent,
                )
            ),
            delivery=Delivery(config.sync.backoff_initial_s / 10, config.sync.backoff_max_s),
            locale=config.locale,
        )
        self._runner = runner
        self.coordinator = coordinator = Coordinator(
            config,
            store,
            roster=roster,
            agent_apis=agent_apis,
            agent_rooms=topology.agent_rooms,
            runner=runner,
        )
        self._router = Router.from_config(config, roster)
        commands = CommandHandlers(
            store,
            agents=roster.hosted(),
            agent_apis=agent_apis,
            models={
                m.agent_id: model_name(config.agents[m.agent_id].backend) for m in roster.hosted()
            },
            chats=Chats(store, router),
            stop_in_room=runner.stop_in_room,
            session_key=session_key,
            delegations=coordinator.manager,
            salon_users=[roster.router_user_id, *(m.user_id for m in roster)],
            is_admin=config.access.is_admin,
        )
        facts = RoomFacts(apis, roster)
        idle_s = config.space.visit_idle_s
        visits = VisitEnder(store, agent_apis, topology.agent_rooms, idle_s, facts.forget)
        coordinator.manager.on_visit = visits.use
        self._invites = invites = InviteJoiner(
            store,
            apis,
            # The running config's policy: a reload's access changes apply here too.
            allowed=lambda sender: roster.is_ours(sender) or self.config.access.is_allowed(sender),
            on_joined=facts.forget,
            visiting=lambda invite: is_visit(roster, voices, invite),
        )
        self._dispatcher = dispatcher = Dispatcher(
            store,
            roster=roster,
            created_at=created_at,
            on_invite=invites.record,
            max_age_ms=max_age_ms(config.store),
            max_rooms=config.dispatch.max_rooms,
            per_room=config.dispatch.per_room,
        )
        messages = MessageHandler(
            store,
            roster=roster,
            access=config.access,
            router=self._router,
            commands=commands,
            runner=runner,
            facts=facts,
            voices=voices,
            agent_apis=agent_apis,
            locale=config.locale,
            on_visit=visits.use,
        )
        reactions = ReactionHandler(runner, roster, config.access)
        dispatcher.add_event_handler("m.room.message", messages)
        dispatcher.add_event_handler("m.reaction", reactions)
        dispatcher.add_event_handler(REQUEST, coordinator.on_request)
        dispatcher.add_event_handler(STATUS, coordinator.on_status)
        dispatcher.on_start(runner.resume_unfinished)
        backoff = Backoff(config.sync.backoff_initial_s, config.sync.backoff_max_s)
        self._source = ClientSyncSource(
            list(apis.values()),
            store.identities,
            timeout_ms=config.sync.timeout_ms,
            startup_jitter_s=0,  # the jitter was spent before logging in
            backoff=backoff,
            reauth=auth.reauth,
        )
        await self._source.start(dispatcher)
        await self._source.wait_ready(self._ready_timeout)

        self._supervisor = supervisor = Supervisor(backoff)
        supervisor.spawn("dispatcher", dispatcher.run)
        self._cron = cron = CronScheduler.from_config(
            config,
            store,
            runner,
            agent_apis=agent_apis,
            agent_rooms=topology.agent_rooms,
            agent_users=agent_users,
            server_name=hs.server_name,
            on_visit=visits.use,
        )
        supervisor.spawn("cron", cron.run)
        supervisor.spawn("invites", invites.run)
        await coordinator.start(supervisor)
        supervisor.spawn("status", self._publish_status)
        for agent_id, room_id in topology.agent_rooms.items():
            beat = Heartbeat(
                agent_apis[agent_id],
                room_id,
                agent_id=agent_id,
                gateway=self.name,
                interval_s=config.heartbeat.interval_s,
                ttl_s=config.heartbeat.ttl_s,
            )
            self._beats[agent_id] = beat
            supervisor.spawn(f"heartbeat:{agent_id}", beat.run)
        beats = self._beats  # the same dict a reload adds to and removes from
        runner.on_slow = lambda agent_id: beats[agent_id].busy() if agent_id in beats else None
        runner.on_idle = lambda agent_id: beats[agent_id].idle() if agent_id in beats else None
        self._parts = Parts(
            auth=auth,
            spaces=spaces,
            source=self._source,
            supervisor=supervisor,
            apis=apis,
            agent_apis=agent_apis,
            agent_users=agent_users,
            agent_rooms=topology.agent_rooms,
            runtimes=runtimes,
            backends=backends,
            beats=beats,
            messages=messages,
            reactions=reactions,
            commands=commands,
            space_id=topology.space_id,
            lobby_id=topology.lobby_id,
            invitees=list(self._invite),
            make_runtime=self._runtime,
            model_name=lambda cfg, a: model_name(cfg.agents[a].backend),
            set_router=self._set_router,
        )
        # Without a way to read the file again, a reload re-applies the config the
        # gateway started with (session agents still come and go).
        base = self._file_config
        self.reloader = Reloader(self, self._load or (lambda: base), watch=self._watch)
        supervisor.spawn("reload", self.reloader.run)
        supervisor.spawn("janitor", Janitor(store, self.reloader.request).run)
        start_retention(config.store, store, supervisor)
        if idle_s is not None:
            supervisor.spawn("visits", visits.run)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reloader.request)
        self.roster = roster
        self.state = GatewayState(topology, router, agent_apis, agent_users)
        if config.api is not None:
            self.api = await start_api(
                self, config.api, self._session, runner, self._router, coordinator.manager
            )
        log_access_policy(config.access)
        log.info("gateway.ready", agents=sorted(runtimes), gateway=self.name)
        return self.state

    def _runtime(self, config: SalonConfig, agent_id: AgentId, backend: Backend) -> AgentRuntime:
        assert self.store is not None
        return make_runtime(config, agent_id, backend, self.store.sessions)

    async def stop(self) -> None:
        """Stop at once: running turns are cancelled (their rows stay open and resume
        on the next start), heartbeats say offline, loops end, the store closes.
        Safe to call again."""
        if self.store is None and self._session is None and not self._backends:
            return  # never started, or stopped already
        if self.api is not None:
            await self.api.stop()
            self.api = None
        if self._supervisor is not None:
            await self._supervisor.stop()
            self._supervisor = None
        if self._source is not None:
            await self._source.stop()
            self._source = None
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        self.coordinator = None
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await asyncio.gather(*(b.go_offline() for b in self._beats.values()))
        self._beats.clear()
        if self._router is not None:
            await self._router.aclose()
            self._router = None
        await asyncio.gather(*(close_backend(b) for b in self._backends.values()))
        self._backends.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        self.state = None
        log.info("gateway.stopped")

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Start, run until SIGINT/SIGTERM (or ``stop`` is set), then shut down
        gracefully (:meth:`shutdown`); a second signal stops at once."""
        stop = stop or asyncio.Event()
        on_stop_signals(stop, self.stop_now)
        try:
            await self.start()
            await stop.wait()
        except BaseException:
            await self.stop()  # a failed start, or cancelled: at once
            raise
        await self.shutdown()
