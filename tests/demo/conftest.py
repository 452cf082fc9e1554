"""Helpers for the demo agents' tests: requests, replies and an in-process delegator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from salon.agents.backend import Backend, TurnRequest
from salon.agents.context import delegator_context
from salon.agents.tools import DelegationOutcome
from salon.ids import AgentId

ALICE = "@alice:localhost"
BOB = "@bob:localhost"
# A winter day (no daylight saving time in Europe or North America).
WINTER_NOON = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
# A summer day (daylight saving time in Europe and North America).
SUMMER_NOON = datetime(2024, 7, 15, 12, 0, tzinfo=UTC)


def request(
    text: str,
    *,
    sender: str = ALICE,
    agent: str = "agent",
    session: str | None = None,
    for_user: str | None = None,
) -> TurnRequest:
    """A turn request as the gateway makes it for a person's message in a room (for
    ``sender``), or with the ``for_user`` given."""
    session_key = session or f"agent:{agent}:matrix:!room:localhost"
    return TurnRequest(AgentId(agent), sender, text, session_key, "1", for_user=for_user or sender)


def task(text: str, *, by: str, agent: str = "agent", for_user: str | None = None) -> TurnRequest:
    """A turn request as the gateway makes it for a task delegated by agent ``by`` for
    the person ``for_user`` (None: for nobody in particular)."""
    return _task(text, by=by, agent=agent, for_user=for_user)


def _task(text: str, *, by: str, agent: str, for_user: str | None) -> TurnRequest:
    return TurnRequest(
        AgentId(agent),
        f"@salon_{by}:localhost",
        text,
        f"agent:{agent}:delegation:root-1",
        "1",
        for_user=for_user,
    )


async def reply(backend: Backend, req: TurnRequest) -> str:
    """The whole reply of ``backend`` to ``req``."""
    return "".join([chunk async for chunk in backend.stream(req)])


class StubDelegator:
    """Answers each delegation with a canned outcome and records what was asked."""

    def __init__(self, answers: Mapping[str, DelegationOutcome]) -> None:
        self.answers = dict(answers)
        self.asked: list[tuple[str, str, str | None]] = []

    def targets(self) -> Sequence[tuple[str, str]]:
        return [(agent, "") for agent in self.answers]

    async def delegate(
        self, agent: str, task: str, context: str | None = None
    ) -> DelegationOutcome:
        self.asked.append((agent, task, context))
        return self.answers[agent]


class LocalDelegator:
    """Delegation between real backends in this process, shaped like the gateway's.

    As in ``salon.gateway.delegated_turns`` (``submit_task``): the asked agent gets
    ``task`` and ``context`` joined by a blank line, from the delegating agent's
    user id, in the session ``agent:<id>:delegation:<root>``, for the person the
    delegating turn works for (``for_user``, as the gateway's ``TurnDelegator``
    carries it); and it may delegate in turn, for the same person.
    """

    def __init__(
        self,
        agents: Mapping[str, Any],
        me: str,
        asked: list[Any] | None = None,
        *,
        for_user: str | None = None,
    ):
        self.agents = agents
        self.me = me
        self.for_user = for_user
        self.asked: list[tuple[str, str, str, str | None]] = [] if asked is None else asked

    def targets(self) -> Sequence[tuple[str, str]]:
        return [(agent, "") for agent in self.agents if agent != self.me]

    async def delegate(
        self, agent: str, task: str, context: str | None = None
    ) -> DelegationOutcome:
        self.asked.append((self.me, agent, task, context))
        text = task + (f"\n\n{context}" if context else "")
        req = _task(text, by=self.me, agent=agent, for_user=self.for_user)
        child = LocalDelegator(self.agents, agent, self.asked, for_user=self.for_user)
        with delegator_context(child):
            return DelegationOutcome(True, await reply(self.agents[agent], req))
