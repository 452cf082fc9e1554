"""The gateway: boots identities, rooms, the event source and the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import structlog

from salon.agents.backend import Backend
from salon.agents.profile import AgentProfile
from salon.agents.registry import build_backend, close_backend
from salon.agents.runtime import AgentRuntime
from salon.api.context import LoopState
from salon.api.server import ApiServer
from salon.commands.chats import Chats
from salon.commands.handlers import CommandHandlers
from salon.config import read_persona
from salon.config.models import BackendConfig, SalonConfig
from salon.coordination.heartbeat import Heartbeat
from salon.coordination.protocol import REQUEST, STATUS
from salon.gateway.bootstrap import Topology, bootstrap
from salon.gateway.coordination import Coordinator
from salon.gateway.dispatcher import Dispatcher
from salon.gateway.identities import identity_specs, login_all
from salon.gateway.invites import InviteJoiner
from salon.gateway.messages import MessageHandler, ReactionHandler, session_key
from salon.gateway.roomfacts import RoomFacts
from salon.gateway.slots import SlotLimits, TurnSlots
from salon.gateway.stream import StreamLimits
from salon.gateway.surface import start_api
from salon.gateway.turns import TurnPolicy, TurnRunner
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.delivery import Delivery
from salon.matrix.login import Authenticator
from salon.matrix.ratelimit import RetryPolicy
from salon.matrix.source import LoopStatus
from salon.matrix.space import SpaceManager
from salon.matrix.sync import ClientSyncSource
from salon.roster import Roster
from salon.routing.router import Router
from salon.store import Store
from salon.store.kv import GATEWAY_STATUS_KEY
from salon.store.records import now_ms
from salon.supervisor import Backoff, LoopHandle, Supervisor

log = structlog.get_logger("salon.gateway")


@dataclass
class GatewayState:
    """What a running gateway is made of (for the CLI, status and tests)."""

    topology: Topology
    router: MatrixAPI
    agent_apis: dict[AgentId, MatrixAPI]
    agent_users: dict[AgentId, UserId] = field(default_factory=dict)


class Gateway:
    """One process hosting many agents on one homeserver."""

    def __init__(
        self,
        config: SalonConfig,
        *,
        invite: Sequence[UserId] = (),
        name: str | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
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
        self._heartbeats: list[Heartbeat] = []
        self._backends: list[Backend] = []
        self._router: Router | None = None
        self.coordinator: Coordinator | None = None

    async def start(self) -> GatewayState:
        """Boot everything; returns once every identity has synced once."""
        config = self.config
        hs = config.homeserver
        assert hs is not None
        roster = Roster.from_config(config)
        # Backends first: an unusable agent config fails before touching the homeserver.
        backends = {m.agent_id: build_backend(config.agents[m.agent_id]) for m in roster.hosted()}
        self._backends = list(backends.values())
        specs = identity_specs(config)
        self.store = store = await Store.open(config.store.url)
        runtimes = {
            a: AgentRuntime(self._profile(a), backend, store.sessions)
            for a, backend in backends.items()
        }
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

        topology = await bootstrap(
            config,
            SpaceManager(router),
            agent_apis,
            store,
            self._invite,
            peers=[m.user_id for m in roster.peers()],
        )
        log.info(
            "gateway.rooms_ready",
            space=topology.space_id,
            space_error=topology.space_error,
            agents=len(topology.agent_rooms),
        )
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
            slots=TurnSlots(SlotLimits(turns.concurrency, turns.per_agent, turns.per_sender)),
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
                m.agent_id: _model_name(config.agents[m.agent_id].backend) for m in roster.hosted()
            },
            chats=Chats(store, router),
            stop_in_room=runner.stop_in_room,
            session_key=session_key,
            delegations=coordinator.manager,
            salon_users=[roster.router_user_id, *(m.user_id for m in roster)],
        )
        facts = RoomFacts(apis, roster)
        self._invites = invites = InviteJoiner(
            store,
            apis,
            allowed=lambda sender: (
                roster.is_ours(sender) or config.access.is_allowed(sender, hs.server_name)
            ),
            on_joined=facts.forget,
        )
        self._dispatcher = dispatcher = Dispatcher(
            store, roster=roster, created_at=created_at, on_invite=invites.record
        )
        dispatcher.add_event_handler(
            "m.room.message",
            MessageHandler(
                store,
                roster=roster,
                access=config.access,
                router=self._router,
                commands=commands,
                runner=runner,
                facts=facts,
                router_api=router,
                agent_apis=agent_apis,
                locale=config.locale,
            ),
        )
        dispatcher.add_event_handler("m.reaction", ReactionHandler(runner, roster, config.access))
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
            # Each agent reads its own room (the inbox is shared), so the router need not
            # be woken for every message there: less work for the homeserver per reply.
            not_rooms={roster.router_user_id: list(topology.agent_rooms.values())},
        )
        await self._source.start(dispatcher)
        await self._source.wait_ready(self._ready_timeout)

        self._supervisor = supervisor = Supervisor(backoff)
        supervisor.spawn("dispatcher", dispatcher.run)
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
            self._heartbeats.append(beat)
            supervisor.spawn(f"heartbeat:{agent_id}", beat.run)
        beats = {AgentId(b.agent_id): b for b in self._heartbeats}
        runner.on_slow = lambda agent_id: beats[agent_id].busy() if agent_id in beats else None
        runner.on_idle = lambda agent_id: beats[agent_id].idle() if agent_id in beats else None
        self.roster = roster
        self.state = GatewayState(topology, router, agent_apis, agent_users)
        if config.api is not None:
            self.api = await start_api(
                self, config.api, self._session, runner, self._router, coordinator.manager
            )
        log.info("gateway.ready", agents=sorted(runtimes), gateway=self.name)
        return self.state

    async def _publish_status(self, handle: LoopHandle, every_s: float = 5.0) -> None:
        """Keep the loops' state in the store, where `salon status` reads it."""
        while True:
            loops = [asdict(loop) for loop in self.loops()]
            status = {"gateway": self.name, "pid": os.getpid(), "updated_ms": now_ms()}
            if self.store is not None:
                await self.store.kv.set(GATEWAY_STATUS_KEY, json.dumps({**status, "loops": loops}))
            handle.healthy()
            await asyncio.sleep(every_s)

    def loops(self) -> list[LoopState]:
        """Every receive loop and supervised loop, with its health."""
        loops = [
            LoopState(f"sync:{s.identity}", s.running, s.restarts, s.backing_off, s.last_error)
            for s in self.loop_status()
        ]
        if self._supervisor is not None:
            loops += [
                LoopState(h.name, h.running, h.restarts, h.backing_off, h.last_error)
                for h in self._supervisor.handles.values()
            ]
        return loops

    def _profile(self, agent_id: AgentId) -> AgentProfile:
        agent = self.config.agents[agent_id]
        persona = read_persona(agent)
        profile = AgentProfile(
            agent_id=agent_id,
            label=agent.display_label,
            description=agent.description,
            home=Path(self.config.data_dir) / "agents" / agent_id,
            config_persona=persona,
            context_tokens=agent.context_tokens,
        )
        profile.ensure_home()
        return profile

    def loop_status(self) -> list[LoopStatus]:
        """Per-identity sync loop state."""
        return self._source.status() if self._source else []

    async def stop(self) -> None:
        """Stop cleanly: heartbeats say offline, loops end, the store closes."""
        if self.api is not None:
            await self.api.stop()
            self.api = None
        if self._supervisor is not None:
            await self._supervisor.stop()
        if self._source is not None:
            await self._source.stop()
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        self.coordinator = None
        await asyncio.gather(*(b.go_offline() for b in self._heartbeats))
        self._heartbeats.clear()
        if self._router is not None:
            await self._router.aclose()
            self._router = None
        await asyncio.gather(*(close_backend(b) for b in self._backends))
        self._backends.clear()
        if self._session is not None:
            await self._session.close()
        if self.store is not None:
            await self.store.close()
            self.store = None
        self.state = None
        log.info("gateway.stopped")

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Start, then run until SIGINT/SIGTERM (or ``stop`` is set), then stop."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.stop()


def _model_name(backend: BackendConfig) -> str:
    """What `!context` calls an agent's model."""
    model = getattr(backend, "model", None)
    return str(model) if model else backend.type
