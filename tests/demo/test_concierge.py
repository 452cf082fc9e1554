"""The demo concierge: routes by keywords, names who answered, merges a team's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from salon.agents.context import delegator_context
from salon.agents.team import TeamBackend
from salon.agents.tools import DelegationOutcome
from salon.demo.calculator import Calculator
from salon.demo.clock import Clock
from salon.demo.concierge import Concierge, route, summarise
from salon.demo.notes import Notes

from .conftest import ALICE, BOB, WINTER_NOON, LocalDelegator, StubDelegator, reply, request

EVERYONE = {
    "calculator": DelegationOutcome(True, "6*7 = 42"),
    "notes": DelegationOutcome(True, "Noted #1: buy oat milk"),
    "clock": DelegationOutcome(True, "It is 21:00 in Tokyo."),
}


async def ask(text: str, delegator: object, *, sender: str = ALICE) -> str:
    with delegator_context(delegator):  # type: ignore[arg-type]
        return await reply(Concierge("concierge", {}), request(text, sender=sender))


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("what is 6*7?", "calculator"),
        ("calculate sqrt(2)", "calculator"),
        ("2^10", "calculator"),
        ("remember buy oat milk", "notes"),
        ("what are my notes?", "notes"),
        ("forget 1", "notes"),
        ("recall", "notes"),
        ("what time is it in Tokyo?", "clock"),
        ("what's the date", "clock"),
        ("remember the meeting at 10+2", "notes"),  # notes come first
        ("hello", None),
        ("tell me a joke", None),
    ],
)
def test_route(text: str, role: str | None) -> None:
    assert route(text) == role


@pytest.mark.parametrize(
    ("text", "agent", "answer"),
    [
        ("what is 6*7?", "calculator", "calculator says: 6*7 = 42"),
        ("@Concierge what time is it in Tokyo?", "clock", "clock says: It is 21:00 in Tokyo."),
        ("remember buy oat milk", "notes", "notes says: Noted #1: buy oat milk"),
    ],
)
async def test_delegates_to_the_right_agent_and_names_it(
    text: str, agent: str, answer: str
) -> None:
    delegator = StubDelegator(EVERYONE)
    assert await ask(text, delegator) == answer
    ((asked, _, context),) = delegator.asked
    assert asked == agent and context is None


async def test_notes_are_asked_with_the_text_only() -> None:
    # Whom it is for travels with the delegation (the gateway's for_user), not in the text.
    delegator = StubDelegator(EVERYONE)
    await ask("@Concierge remember buy oat milk", delegator, sender=BOB)
    assert delegator.asked == [("notes", "remember buy oat milk", None)]


async def test_no_match_gets_help_and_asks_nobody() -> None:
    delegator = StubDelegator(EVERYONE)
    out = await ask("hello there", delegator)
    assert delegator.asked == []
    assert out.startswith("I am the concierge")
    for agent in ("calculator", "notes", "clock"):
        assert f"I ask {agent}" in out


async def test_help_lists_only_agents_it_can_reach() -> None:
    out = await ask("hello", StubDelegator({"clock": EVERYONE["clock"]}))
    assert "I ask clock" in out and "calculator" not in out
    assert "nobody I can ask" in await ask("hello", None)


async def test_a_failed_delegation_is_said_plainly() -> None:
    delegator = StubDelegator({**EVERYONE, "clock": DelegationOutcome(False, "[OFFLINE] clock")})
    assert await ask("time in Tokyo", delegator) == (
        "I asked clock, but it could not answer: [OFFLINE] clock"
    )


async def test_an_agent_it_may_not_ask() -> None:
    delegator = StubDelegator({"calculator": EVERYONE["calculator"]})
    assert await ask("time in Tokyo", delegator) == (
        "That is a question for clock, but I cannot ask clock from here."
    )
    assert delegator.asked == []


async def test_options_rename_the_agents_it_asks() -> None:
    delegator = StubDelegator({"maths": DelegationOutcome(True, "4")})
    with delegator_context(delegator):
        out = await reply(Concierge("concierge", {"calculator": "maths"}), request("2+2"))
    assert out == "maths says: 4"


def _agents(tmp_path: Path) -> dict[str, object]:
    return {
        "concierge": Concierge("concierge", {}),
        "calculator": Calculator("calculator", {}),
        "clock": Clock("clock", {}, now=lambda: WINTER_NOON),
        "notes": Notes("notes", {}, home=tmp_path),
    }


async def test_real_agents_in_process_notes_stay_per_person(tmp_path: Path) -> None:
    agents = _agents(tmp_path)
    for person, thing in ((ALICE, "alice's thing"), (BOB, "bob's thing")):
        delegator = LocalDelegator(agents, "concierge", for_user=person)
        out = await ask(f"@Concierge remember {thing}", delegator, sender=person)
        assert out == f"notes says: Noted #1: {thing}"
    mine = LocalDelegator(agents, "concierge", for_user=ALICE)
    out = await ask("what are my notes?", mine, sender=ALICE)
    assert out == "notes says: Your notes:\n1. alice's thing"
    # Alice naming Bob in the text still gets her own notes: the text is only text.
    claim = LocalDelegator(agents, "concierge", for_user=ALICE)
    out = await ask(f"for {BOB}: what are my notes?", claim, sender=ALICE)
    assert out == "notes says: Your notes:\n1. alice's thing"
    out = await ask("what is 6*7?", LocalDelegator(agents, "concierge", for_user=ALICE))
    assert out == "calculator says: 6*7 = 42"


async def test_leads_a_collaborate_team(tmp_path: Path) -> None:
    agents = _agents(tmp_path)
    desk = TeamBackend(mode="collaborate", lead="concierge", members=["calculator", "clock"])
    delegator = LocalDelegator(agents, "desk")
    with delegator_context(delegator):
        out = await reply(desk, request("@Desk what is 2^10 and what time is it in London?"))
    assert out == (
        "Here is what the team found:\n"
        "• calculator: 2^10 = 1024\n"
        "• clock: It is 12:00 on Monday 15 January 2024 in London (Europe/London, UTC+00:00)."
    )
    # Members answered in parallel, then the lead merged (and asked nobody else).
    assert [(by, to) for by, to, _, _ in delegator.asked] == [
        ("desk", "calculator"),
        ("desk", "clock"),
        ("desk", "concierge"),
    ]

    with delegator_context(LocalDelegator(agents, "desk")):
        out = await reply(desk, request("@Desk what time is it in Paris?"))
    assert out.startswith("Here is what the team found:\n• clock: It is 13:00")
    assert "calculator" not in out  # it had nothing to say

    with delegator_context(LocalDelegator(agents, "desk")):
        out = await reply(desk, request("@Desk sing me a song"))
    assert out.startswith("Nobody on the team had an answer to that. What they can do:")
    assert "• calculator: I do arithmetic" in out and "• clock: I tell the time" in out


def test_summary_reports_members_that_failed() -> None:
    text = (
        "Summarise your team's answers (below) to this message into one reply.\n\n"
        "Message: time?\n\nAnswers:\ncalculator: 🤷 I do arithmetic\n\n"
        "clock: [TIMEOUT] clock"
    )
    assert (
        summarise(text) == "Here is what the team found:\n• clock could not answer: [TIMEOUT] clock"
    )
