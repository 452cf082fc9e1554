"""Command handlers on a real store and a fake homeserver, asked as a person would."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, cast

from tests.fake_matrix import FakeHomeserver, FakeMatrixAPI

from salon.agents.tools import DelegationOutcome
from salon.commands.chats import Chats
from salon.commands.context import AgentViews, TurnHooks
from salon.commands.handlers import Asked, CommandHandlers
from salon.commands.parser import parse_command
from salon.coordination.delegation import DelegationManager
from salon.ids import AgentId, EventId, RoomId, UserId
from salon.matrix.events import InboundEvent
from salon.routing.context import AgentInfo
from salon.store import Store

ROUTER = UserId("@salon:localhost")
ALICE = UserId("@alice:localhost")
BOB = UserId("@bob:localhost")
CODER = AgentInfo(
    agent_id=AgentId("coder"),
    user_id=UserId("@salon_coder:localhost"),
    label="Coder",
    localpart="salon_coder",
    description="Writes code",
)
WRITER = AgentInfo(
    agent_id=AgentId("writer"),
    user_id=UserId("@salon_writer:localhost"),
    label="Writer",
    localpart="salon_writer",
    description="Writes prose",
)
_event_ids = itertools.count(1)


@dataclass
class StubDelegations:
    """Stands in for the DelegationManager: records what ``!delegate`` asked."""

    outcome: DelegationOutcome = field(default_factory=lambda: DelegationOutcome(True, ""))
    asked: list[dict[str, Any]] = field(default_factory=list)

    async def delegate(
        self, from_agent: str, to_agent: str, task: str, **kwargs: Any
    ) -> DelegationOutcome:
        self.asked.append({"from": from_agent, "to": to_agent, "task": task, **kwargs})
        return self.outcome


@dataclass
class Harness:
    store: Store
    hs: FakeHomeserver
    router: FakeMatrixAPI
    agents: dict[AgentId, FakeMatrixAPI]
    handlers: CommandHandlers
    delegations: StubDelegations
    stopped: list[str] = field(default_factory=list)
    running: int = 0  # what `stop_in_room` reports

    @classmethod
    async def start(cls, store: Store) -> Harness:
        hs = FakeHomeserver()
        router = hs.api(ROUTER)
        agents = {a.agent_id: hs.api(a.user_id) for a in (CODER, WRITER)}
        delegations = StubDelegations()
        harness: Harness

        def stop_in_room(room_id: str) -> int:
            harness.stopped.append(room_id)
            return harness.running

        handlers = CommandHandlers(
            store,
            agents=AgentViews(
                [CODER, WRITER], dict(agents), {"coder": "qwen2.5", "writer": "llama3"}
            ),
            chats=Chats(store, router),
            turns=TurnHooks(
                stop_in_room,
                lambda event, agent_id: f"agent:{agent_id}:matrix:{event.room_id}",
            ),
            delegations=cast(DelegationManager, delegations),
        )
        harness = cls(store, hs, router, agents, handlers, delegations)
        return harness

    async def shared_room(self, *members: FakeMatrixAPI) -> RoomId:
        """A room Alice made, with the router (and ``members``) joined."""
        alice = self.hs.api(ALICE)
        room = await alice.create_room(invite=[ROUTER, *(m.user_id for m in members)])
        for api in (self.router, *members):
            await api.join(room)
        return room

    async def ask(
        self,
        room_id: str,
        body: str,
        *,
        sender: str = ALICE,
        event_id: str | None = None,
        reply_to: str | None = None,
    ) -> list[str]:
        """Handle ``body`` as a command from ``sender``; the router's answers."""
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        event = InboundEvent(
            event_id=EventId(event_id or f"$cmd{next(_event_ids)}"),
            room_id=RoomId(room_id),
            sender=UserId(sender),
            type="m.room.message",
            content=content,
            origin_ts=int(time.time() * 1000),
            received_by=ROUTER,
        )
        command = parse_command(body)
        assert command is not None, body
        user = await self.store.users.get(sender)
        room = await self.store.rooms.get(room_id)
        answers: list[str] = []

        async def reply(text: str) -> None:
            answers.append(text)

        asked = Asked(event, command, user, room, user.locale or "en", reply)
        await self.handlers.handle(asked)
        return answers
