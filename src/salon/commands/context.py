"""What a `!` command handler is given: the command as asked, and the services it uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from salon import responses
from salon.commands.chats import Chats
from salon.commands.parser import AgentChoice, ChoiceError, Command
from salon.coordination.delegation import DelegationManager
from salon.ids import AgentId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.routing.context import AgentInfo
from salon.store import Store
from salon.store.approvals import ApprovalRecord
from salon.store.records import RoomKind, RoomRecord
from salon.store.users import UserRecord

Reply = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Asked:
    """One command as asked: who, where, in which language."""

    event: InboundEvent
    command: Command
    user: UserRecord
    room: RoomRecord | None
    locale: str
    reply: Reply

    def t(self, key: str, **values: Any) -> str:
        """A catalogue text in the asker's language."""
        return responses.text(key, self.locale, **values)


@dataclass(frozen=True)
class AgentViews:
    """The hosted agents as commands see them: live views of the gateway's registry
    (a reload changes what they show, never a copy held here)."""

    members: Sequence[AgentInfo]
    apis: Mapping[AgentId, MatrixAPI]
    models: Mapping[str, str]


@dataclass(frozen=True)
class TurnHooks:
    """What commands ask of the turn pipeline: stop a room's turns (how many were
    stopped), and the session key a message to an agent runs under."""

    stop_in_room: Callable[[str], int]
    session_key: Callable[[InboundEvent, str], str]


@dataclass(frozen=True)
class UserRoles:
    """Who is who to commands: users of this and other gateways (agents, routers),
    and who is an admin."""

    salon_users: Collection[str] = ()
    is_admin: Callable[[str], bool] = lambda _user: False


class ApprovalDecider(Protocol):
    """Decides approval requests (the gateway's desk, see gateway/approvals.py)."""

    async def decide(
        self, ref: str, *, approve: bool, by: str, via: str, by_event: bool = False
    ) -> tuple[str, ApprovalRecord | None]:
        """What happened (approved, denied, not_found, not_allowed, decided) and the row."""
        ...


class Services:
    """What the commands work with. State that must survive a restart goes to the store.

    ``agents`` and ``models`` are live views of the gateway's registry: a reload
    changes what they show, never a copy held here.
    """

    def __init__(
        self,
        store: Store,
        *,
        agents: AgentViews,
        chats: Chats,
        turns: TurnHooks,
        delegations: DelegationManager | None = None,
        roles: UserRoles | None = None,
    ) -> None:
        roles = roles or UserRoles()
        self.store = store
        self.agents = agents.members  # a live view where the gateway reloads (see the registry)
        self.agent_apis = agents.apis
        self.models = agents.models
        self.chats = chats
        self.stop_in_room = turns.stop_in_room
        self.session_key = turns.session_key
        self.delegations = delegations
        self.is_admin = roles.is_admin
        # Senders whose messages `!why` does not explain: agents' replies are routed too.
        # ``salon_users`` adds users of other gateways (peers) to ours.
        self.salon_users = frozenset(
            {a.user_id for a in agents.members} | {chats.router.user_id} | set(roles.salon_users)
        )
        # `!approve` / `!deny` answer here (the composition root sets it).
        self.approvals: ApprovalDecider | None = None
        # `!load` waits for a number; deliberately in memory: a restart drops the choice.
        self.pending_loads: dict[tuple[str, str], list[Any]] = {}

    @property
    def by_id(self) -> dict[str, AgentInfo]:
        return {a.agent_id: a for a in self.agents}

    def own_chat(self, asked: Asked) -> RoomRecord | None:
        """The room asked in, if it is a `!new` chat of the asker's."""
        room = asked.room
        if room and room.kind is RoomKind.CHAT and room.owner == asked.event.sender:
            return room
        return None

    async def room_agent(self, asked: Asked) -> AgentInfo | None:
        """The agent a session command is about: the room's, else the person's selection.

        Says so (and returns None) when there is none.
        """
        bound = asked.room.agent_id if asked.room and asked.room.agent_id else None
        agent = self.by_id.get(bound or asked.user.selected_agent or "")
        if agent is None:
            await asked.reply(asked.t("context_no_agent"))
        return agent

    def chosen(self, choice: AgentChoice) -> AgentInfo:
        """The agent an ``!agent <n|id>`` choice names."""
        if choice.index is not None:
            return self.agents[choice.index - 1]
        return self.by_id[str(choice.agent_id)]

    def choice_error(self, asked: Asked, error: ChoiceError, args: str) -> str:
        """What to say about an ``!agent`` choice that names no agent."""
        if error is ChoiceError.OUT_OF_RANGE:
            return asked.t("agent_choice_out_of_range", max=len(self.agents))
        if error is ChoiceError.EMPTY:
            return asked.t("agent_choice_empty")
        return asked.t("agent_choice_unknown", choice=args[:40])

    def api_of(self, agent_id: str | None) -> MatrixAPI | None:
        """The Matrix API of a hosted agent (None for one that is gone)."""
        return self.agent_apis.get(AgentId(agent_id or ""))
