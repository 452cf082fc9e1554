"""Delegation as one agent may use it during one turn (the agents layer's Delegator)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from salon.agents.tools import DelegationOutcome
from salon.coordination.protocol import DelegationRequest

if TYPE_CHECKING:
    from salon.coordination.delegation import DelegationManager


class TurnDelegator:
    """Delegates on behalf of ``agent_id``, remembering where the turn happens."""

    def __init__(
        self,
        manager: DelegationManager,
        agent_id: str,
        *,
        origin_room: str | None,
        origin_event: str | None,
        parent: DelegationRequest | None = None,
        for_user: str | None = None,
    ) -> None:
        self.manager = manager
        self.agent_id = agent_id
        self.origin_room = origin_room
        self.origin_event = origin_event
        self.parent = parent
        # Whom the turn works for: every delegation it makes is for that person too.
        self.for_user = for_user
        # Told before each delegation this turn makes (a turn that made none is owed
        # nothing as it closes: see gateway/delegated_turns.py).
        self.on_ask: Callable[[], None] | None = None

    def targets(self) -> Sequence[tuple[str, str]]:
        """Agents this agent may delegate to."""
        return self.manager.targets(self.agent_id)

    async def delegate(
        self, agent: str, task: str, context: str | None = None
    ) -> DelegationOutcome:
        """Delegate and wait for the outcome."""
        if self.on_ask is not None:
            self.on_ask()
        return await self.manager.delegate(
            self.agent_id,
            agent,
            task,
            context=context,
            origin_room=self.origin_room,
            origin_event=self.origin_event,
            parent=self.parent,
            for_user=self.for_user,
        )
