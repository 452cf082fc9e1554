"""Fair shares of the turn runner: one user or one agent cannot take every slot.

A turn holds a slot of its sender, of its agent and of the process, taken in
that order (always the same order, so two turns never wait on each other).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class SlotLimits:
    """How many turns may run at once: in all, per agent, per sender."""

    total: int = 32
    per_agent: int = 8
    per_sender: int = 4


class TurnSlots:
    """Semaphores for the process, each agent and each sender (made on first use)."""

    def __init__(self, limits: SlotLimits | None = None) -> None:
        self.limits = limits or SlotLimits()
        self._total = asyncio.Semaphore(self.limits.total)
        self._agents: dict[str, asyncio.Semaphore] = {}
        self._senders: dict[str, asyncio.Semaphore] = {}
        self._holders: dict[str, int] = {}  # sender → turns holding or waiting

    @asynccontextmanager
    async def hold(self, agent_id: str, sender: str) -> AsyncIterator[None]:
        """Wait for a slot of ``sender``, ``agent_id`` and the process; hold all three."""
        sender_slots = self._senders.setdefault(sender, asyncio.Semaphore(self.limits.per_sender))
        agent_slots = self._agents.setdefault(agent_id, asyncio.Semaphore(self.limits.per_agent))
        self._holders[sender] = self._holders.get(sender, 0) + 1
        try:
            async with sender_slots, agent_slots, self._total:
                yield
        finally:
            self._holders[sender] -= 1
            if not self._holders[sender]:
                # A process answering many people must not keep a semaphore per person.
                del self._holders[sender]
                self._senders.pop(sender, None)
