"""Teams answer through their members, by delegation (a stub delegator, no Matrix)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from salon._exceptions import BackendError
from salon.agents.backend import TurnRequest
from salon.agents.context import delegator_context
from salon.agents.team import TeamBackend
from salon.agents.tools import DelegationOutcome
from salon.ids import AgentId


class StubDelegator:
    """Answers each delegation with a canned text and records what was asked."""

    def __init__(self, answers: dict[str, DelegationOutcome]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str, str | None]] = []

    def targets(self) -> Sequence[tuple[str, str]]:
        return [(a, "") for a in self.answers]

    async def delegate(
        self, agent: str, task: str, context: str | None = None
    ) -> DelegationOutcome:
        self.asked.append((agent, task, context))
        return self.answers[agent]


def _request(text: str) -> TurnRequest:
    return TurnRequest(AgentId("team"), "@alice:localhost", text, "session", "1")


async def _answer(team: TeamBackend, delegator: StubDelegator | None, text: str) -> str:
    with delegator_context(delegator):
        return "".join([chunk async for chunk in team.stream(_request(text))])


async def test_collaborate_gives_the_lead_each_answer_once() -> None:
    delegator = StubDelegator(
        {
            "coder": DelegationOutcome(True, "ANSWER-OF-CODER"),
            "writer": DelegationOutcome(True, "ANSWER-OF-WRITER"),
            "lead": DelegationOutcome(True, "the summary"),
        }
    )
    team = TeamBackend(mode="collaborate", lead="lead", members=["coder", "writer"])

    assert await _answer(team, delegator, "how?") == "the summary"

    members = {agent: task for agent, task, _ in delegator.asked[:2]}
    assert members == {"coder": "how?", "writer": "how?"}
    agent, task, context = delegator.asked[2]
    assert agent == "lead"
    # The target reads task and context together: each answer must be in there once.
    seen = task + "\n\n" + (context or "")
    assert seen.count("ANSWER-OF-CODER") == 1
    assert seen.count("ANSWER-OF-WRITER") == 1
    assert "how?" in task


async def test_coordinate_hands_the_message_to_the_lead() -> None:
    delegator = StubDelegator({"lead": DelegationOutcome(True, "done")})
    team = TeamBackend(mode="coordinate", lead="lead", members=["coder"])
    assert await _answer(team, delegator, "build it") == "done"
    assert delegator.asked == [("lead", "build it", None)]


async def test_a_failing_lead_is_a_backend_error() -> None:
    delegator = StubDelegator({"lead": DelegationOutcome(False, "[OFFLINE] lead")})
    team = TeamBackend(mode="coordinate", lead="lead", members=[])
    with pytest.raises(BackendError, match="OFFLINE"):
        await _answer(team, delegator, "x")


async def test_no_delegation_available_is_a_backend_error() -> None:
    team = TeamBackend(mode="coordinate", lead="lead", members=[])
    with pytest.raises(BackendError):
        await _answer(team, None, "x")
