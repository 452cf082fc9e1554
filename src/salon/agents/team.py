"""A team answers through its members, by delegation (no Matrix here: a Delegator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from salon._exceptions import BackendError
from salon.agents.backend import TurnRequest
from salon.agents.context import current_delegator


class TeamBackend:
    """``coordinate``: the lead gets the message (and may delegate parts to members);
    ``collaborate``: every member answers in parallel, then the lead summarises."""

    def __init__(self, *, mode: str, lead: str, members: Sequence[str]) -> None:
        self.mode = mode
        self.lead = lead
        self.members = list(members)

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """One final answer for the team."""
        delegator = current_delegator()
        if delegator is None:
            raise BackendError("a team can only answer while delegation is available")
        if self.mode == "collaborate":
            outcomes = await asyncio.gather(
                *(delegator.delegate(m, request.text) for m in self.members)
            )
            answers = "\n\n".join(
                f"{m}: {o.text}" for m, o in zip(self.members, outcomes, strict=True)
            )
            # The answers travel once, as context: the target reads task and context together.
            task = (
                "Summarise your team's answers (below) to this message into one reply.\n\n"
                f"Message: {request.text}"
            )
            final = await delegator.delegate(self.lead, task, context=f"Answers:\n{answers}")
        else:
            final = await delegator.delegate(self.lead, request.text)
        if not final.ok:
            raise BackendError(f"the team lead {self.lead} could not answer: {final.text}")
        yield final.text
