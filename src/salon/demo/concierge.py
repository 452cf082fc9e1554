"""A concierge agent: picks the right agent by keywords and delegates to it.

Shows a ``python`` backend that delegates
(``salon.agents.context.current_delegator()``): every hand-off is a
delegation over Matrix that people can watch in the room, and the answer names
who did the work (``calculator says: 6*7 = 42``).

- notes (``remember …``, ``notes``, ``recall``, ``forget …``) → the notes agent;
  the gateway sends each delegation *for* the person the concierge works for
  (the request's ``for_user``, see :mod:`salon.demo.notes`), so everyone keeps
  their own notes whatever the text says;
- the time (``time``, ``clock``, ``date``) → the clock agent;
- arithmetic (``what is 6*7``, ``sqrt(2)``) → the calculator;
- anything else: a short help text listing what it can do.

As a team's lead in ``collaborate`` mode it gets the members' answers and
merges them into one reply, leaving out the members that had nothing to say
(see :data:`salon.demo.common.NOTHING_FOR_ME`).

Options name the agents it asks, for configs that call them differently:
``{calculator: calculator, notes: notes, clock: clock}`` (the defaults).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from salon.agents.backend import TurnRequest
from salon.agents.context import current_delegator
from salon.agents.tools import Delegator
from salon.demo.calculator import looks_like_arithmetic
from salon.demo.common import is_nothing_for_me, strip_mentions

ROLES = ("calculator", "notes", "clock")

_NOTES = re.compile(r"\b(?:remember|notes?|recall|forget)\b", re.I)
_TIME = re.compile(r"\b(?:time|clock|date|timezone|o'clock)\b", re.I)
_CALC = re.compile(r"\b(?:calculate|compute|sqrt)\b", re.I)

_EXAMPLES = {
    "calculator": "arithmetic: `what is 6*7?`, `sqrt(2) * 3`",
    "notes": "your notes: `remember buy oat milk`, `what are my notes?`, `forget 1`",
    "clock": "the time: `what time is it in Tokyo?`, `time in Europe/Paris`",
}

# How salon.agents.team.TeamBackend asks a collaborate team's lead to summarise.
TEAM_SUMMARY_PREFIX = "Summarise your team's answers"
_ANSWER_START = re.compile(r"\n\n(?=[a-z0-9][a-z0-9_-]*: )")
_FAILED = re.compile(r"^\[[A-Z_]+\]")


def route(text: str) -> str | None:
    """Which kind of agent a message is for (one of :data:`ROLES`), or None."""
    if _NOTES.search(text):
        return "notes"
    if _TIME.search(text):
        return "clock"
    if _CALC.search(text) or looks_like_arithmetic(text):
        return "calculator"
    return None


def summarise(text: str) -> str:
    """One reply from a collaborate team's answers (the text the team lead is given)."""
    _, sep, block = text.partition("Answers:\n")
    if not sep:
        return text
    useful, hints = [], []
    for entry in _ANSWER_START.split(block.strip()):
        agent, _, answer = entry.partition(": ")
        answer = answer.strip()
        if is_nothing_for_me(answer):
            hints.append(f"• {agent}: {answer.lstrip('🤷 ').strip()}")
        elif _FAILED.match(answer):
            useful.append(f"• {agent} could not answer: {answer}")
        else:
            useful.append(f"• {agent}: " + answer.replace("\n", "\n  "))
    if useful:
        return "Here is what the team found:\n" + "\n".join(useful)
    return "Nobody on the team had an answer to that. What they can do:\n" + "\n".join(hints)


class Concierge:
    """The ``python`` backend (``entry: salon.demo.concierge:Concierge``)."""

    def __init__(self, agent_id: str, options: Mapping[str, Any]) -> None:
        self.agent_id = agent_id
        self.agents = {role: str(options.get(role) or role) for role in ROLES}

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """One reply: the asked agent's answer (named), a team summary, or the help text."""
        if request.text.startswith(TEAM_SUMMARY_PREFIX):
            yield summarise(request.text)
            return
        # Whom it is for travels with the delegation (``for_user``), not in the text.
        text = strip_mentions(request.text)
        delegator = current_delegator()
        reachable = {agent for agent, _ in delegator.targets()} if delegator else set()
        role = route(text)
        if role is None:
            yield self.help(reachable)
            return
        agent = self.agents[role]
        if delegator is None or agent not in reachable:
            yield f"That is a question for {agent}, but I cannot ask {agent} from here."
            return
        yield await self.ask(delegator, agent, text)

    async def ask(self, delegator: Delegator, agent: str, task: str) -> str:
        """Delegate ``task`` to ``agent``; its answer, named."""
        outcome = await delegator.delegate(agent, task)
        if outcome.ok:
            return f"{agent} says: {outcome.text}"
        return f"I asked {agent}, but it could not answer: {outcome.text}"

    def help(self, reachable: set[str]) -> str:
        """What the concierge can do (with the agents it can reach)."""
        lines = [
            f"• {_EXAMPLES[role]} (I ask {self.agents[role]})"
            for role in ROLES
            if self.agents[role] in reachable
        ]
        if not lines:
            return "I am the concierge, but there is nobody I can ask right now."
        return (
            "I am the concierge: tell me what you need and I ask the right agent.\n"
            + "\n".join(lines)
            + "\nYou can also mention an agent yourself, e.g. `@Clock time in Paris`."
        )
