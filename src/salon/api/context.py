"""What the HTTP API may use of the running gateway (one object, handed to every route)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from salon.api.attachment_links import AttachmentLinker
from salon.commands.context import ApprovalDecider
from salon.coordination.delegation import DelegationManager
from salon.ids import AgentId, RoomId
from salon.matrix.api import MatrixAPI
from salon.roster import Roster
from salon.routing.router import Router
from salon.store import Store
from salon.turns.runner import TurnRunner
from salon.turns.voices import RoomVoices


@dataclass
class LoopState:
    """One supervised loop, as `/readyz` and `/api/v1/status` report it."""

    name: str
    running: bool
    restarts: int
    backing_off: bool
    last_error: str | None


@dataclass
class ApiContext:
    """The running gateway, as the API sees it."""

    gateway: str  # this gateway's name
    roster: Roster
    store: Store
    runner: TurnRunner
    router: Router
    delegations: DelegationManager
    router_api: MatrixAPI  # the router's identity (asks the homeserver, reads rooms)
    # Read-only views of the gateway's hosted agents (a reload changes what they show).
    agent_apis: Mapping[str, MatrixAPI]
    agent_rooms: Mapping[str, str]  # agent id → its room id
    lobby_id: str
    loops: Callable[[], list[LoopState]]
    operator: MatrixAPI | None = None  # who the admin API sends messages as
    locale: str = "en"
    # Whether the homeserver answers right now (a cheap call; `/readyz`).
    homeserver_ok: Callable[[], Awaitable[bool]] | None = None
    # Starts a session agent: (template, ttl_s, idle_s, name) → its id, once it runs.
    spawn: Callable[[str, float, float | None, str | None], Awaitable[str]] | None = None
    # Serves the short-lived links http backends get to big attachments.
    links: AttachmentLinker | None = None
    # The dashboard: each agent's backend, model, team members, session end (live config).
    agent_info: Callable[[], Awaitable[Mapping[str, dict[str, Any]]]] | None = None
    # Reload the config now (the dashboard's button): what the reload did, as JSON.
    reload: Callable[[], Awaitable[dict[str, Any]]] | None = None
    # Answers approval requests (`/api/v1/approvals`); None: approvals are off.
    approvals: ApprovalDecider | None = None
    # Whether an agent answers A2A calls at `/a2a/<id>` (the running config's say).
    a2a_served: Callable[[str], bool] | None = None

    def identities(self) -> list[MatrixAPI]:
        """Every identity the gateway acts as: the router, the agents, the operator."""
        found = [self.router_api, *self.agent_apis.values()]
        return [*found, self.operator] if self.operator is not None else found

    async def api_in(self, room_id: str) -> MatrixAPI:
        """Who of ours is a member of ``room_id`` and reads or invites there: the agent
        in its own room or a `!new` chat (the router stays out of those), the router
        elsewhere."""
        voices = RoomVoices(
            self.router_api,
            cast("Mapping[AgentId, MatrixAPI]", self.agent_apis),
            cast("Mapping[AgentId, RoomId]", self.agent_rooms),
        )
        return voices.of(room_id, await self.store.rooms.get(room_id))
