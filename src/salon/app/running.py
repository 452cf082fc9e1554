"""A running gateway: every part it is made of, none optional.

Built by :func:`salon.app.assemble.assemble` only once every start-up step has
succeeded; until then (and after a stop) there is no :class:`RunningGateway`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from salon.agents.mcp_hub import McpHub
from salon.api.server import ApiServer
from salon.commands.handlers import CommandHandlers
from salon.config.models import SalonConfig
from salon.gateway.bootstrap import Topology
from salon.gateway.cron import CronScheduler
from salon.gateway.delegated_turns import Coordinator
from salon.gateway.dispatcher import Dispatcher
from salon.gateway.live import LiveAgents
from salon.gateway.messages import MessageHandler, ReactionHandler
from salon.gateway.registry import HostedAgents
from salon.gateway.reload import Reloader
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.login import Authenticator
from salon.matrix.source import IdentitySource
from salon.matrix.space import SpaceManager
from salon.roster import Roster
from salon.routing.router import Router
from salon.store import Store
from salon.supervisor import Supervisor
from salon.turns.runner import TurnRunner


@dataclass
class GatewayState:
    """What a running gateway is made of (for the CLI, status and tests). The maps
    are read-only views of the hosted agents' registry (a reload changes them)."""

    topology: Topology
    router: MatrixAPI
    agent_apis: Mapping[AgentId, MatrixAPI]
    agent_users: Mapping[AgentId, UserId]


@dataclass(frozen=True)
class Homeserver:
    """The gateway's side of the homeserver: HTTP, logins, the Space, the sync loops."""

    session: aiohttp.ClientSession
    auth: Authenticator
    spaces: SpaceManager  # acts as the router
    source: IdentitySource


class Routing:
    """The router routing messages now (a reload swaps it; the message handler and the
    API see the new one at once)."""

    def __init__(self, router: Router) -> None:
        self.current = router
        self.users: list[MessageHandler] = []

    async def swap(self, router: Router, api: ApiServer | None) -> None:
        old, self.current = self.current, router
        for handler in self.users:
            handler.router = router
        if api is not None:
            api.context.router = router
        await old.aclose()


@dataclass(frozen=True)
class Pipeline:
    """From the inbox to turns: the handlers and the runner."""

    dispatcher: Dispatcher
    runner: TurnRunner
    coordinator: Coordinator
    commands: CommandHandlers
    messages: MessageHandler
    reactions: ReactionHandler
    cron: CronScheduler
    routing: Routing


@dataclass
class RunningGateway:
    """Everything a running gateway holds (``config`` changes with a reload)."""

    config: SalonConfig
    store: Store
    roster: Roster
    hosted: HostedAgents
    state: GatewayState
    homeserver: Homeserver
    pipeline: Pipeline
    supervisor: Supervisor
    reloader: Reloader
    api: ApiServer | None  # None: no ``api:`` section configured
    live: LiveAgents  # adds, changes and removes hosted agents (a reload)
    mcp: McpHub | None = None  # the MCP tool servers
