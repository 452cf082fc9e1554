"""Fair shares of the turn runner: one user or one agent cannot take every slot.

A turn holds a slot of its sender, of its agent and of the process. Turns that
must wait are granted in turns: round-robin across senders, and within one
sender round-robin across agents, so a flood from one person (or to one agent)
waits behind itself, not in front of everybody else. How many turns may *wait*
per sender and per agent is bounded too (:meth:`TurnSlots.refusal`): past it a
new turn is refused rather than queued behind a long line.

A turn that waits on another agent (a delegation) lends its slots back for that
wait (:meth:`Lease.lend`) and takes them again, ahead of new turns, after it.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from salon.metrics import TURNS_REFUSED


@dataclass(frozen=True)
class SlotLimits:
    """How many turns may run at once: in all, per agent, per sender; and how many
    may wait for a slot, per sender and per agent (None: unbounded)."""

    total: int = 32
    per_agent: int = 8
    per_sender: int = 4
    max_waiting_per_sender: int | None = None
    max_waiting_per_agent: int | None = None


_Waiter = asyncio.Future[None]


class TurnSlots:
    """Slots of the process, each agent and each sender, granted fairly."""

    def __init__(self, limits: SlotLimits | None = None) -> None:
        self.limits = limits or SlotLimits()
        self._total = 0
        self._agents: Counter[str] = Counter()  # running turns per agent
        self._senders: Counter[str] = Counter()  # running turns per sender
        # Waiting turns: sender → agent → futures. Who goes next is whoever was served
        # least lately (a tick per sender, and per sender and agent), so a new person
        # goes ahead of one who keeps sending, and that person's turns take turns too.
        self._queues: dict[str, dict[str, deque[_Waiter]]] = {}
        self._waiting_senders: Counter[str] = Counter()
        self._waiting_agents: Counter[str] = Counter()
        self._tick = 0
        self._served: dict[str, int] = {}  # sender → tick of its latest slot
        self._served_pair: dict[tuple[str, str], int] = {}
        self._returning: set[_Waiter] = set()  # back from a delegation: served first

    # --- bounds --------------------------------------------------------------------

    def refusal(self, agent_id: str, sender: str) -> str | None:
        """Why a new turn of ``sender`` for ``agent_id`` would wait too long (``"sender"``
        or ``"agent"``: too many of theirs wait already; counted), or None if it may
        be queued."""
        if self._fits(agent_id, sender):
            return None  # it would start at once
        limits, reason = self.limits, None
        bound = limits.max_waiting_per_sender
        if bound is not None and self._waiting_senders[sender] >= bound:
            reason = "sender"
        bound = limits.max_waiting_per_agent
        if reason is None and bound is not None and self._waiting_agents[agent_id] >= bound:
            reason = "agent"
        if reason is not None:
            TURNS_REFUSED.labels(reason=reason).inc()
        return reason

    def waiting(self, *, agent_id: str | None = None, sender: str | None = None) -> int:
        """Turns waiting for a slot: of one agent, of one sender, or in all."""
        if agent_id is not None:
            return self._waiting_agents[agent_id]
        if sender is not None:
            return self._waiting_senders[sender]
        return sum(self._waiting_senders.values())

    def running(self, agent_id: str) -> int:
        """Turns of ``agent_id`` holding their slots now."""
        return self._agents[agent_id]

    # --- holding --------------------------------------------------------------------

    @asynccontextmanager
    async def hold(self, agent_id: str, sender: str) -> AsyncIterator[Lease]:
        """Wait for a slot of ``sender``, ``agent_id`` and the process; hold all three."""
        lease = Lease(self, agent_id, sender)
        await self._acquire(agent_id, sender, first=False)
        lease.held = True
        try:
            yield lease
        finally:
            if lease.held:
                lease.held = False
                self._release(agent_id, sender)

    def _fits(self, agent_id: str, sender: str) -> bool:
        limits = self.limits
        return (
            self._total < limits.total
            and self._agents[agent_id] < limits.per_agent
            and self._senders[sender] < limits.per_sender
        )

    def _take(self, agent_id: str, sender: str) -> None:
        self._total += 1
        self._agents[agent_id] += 1
        self._senders[sender] += 1
        self._tick += 1
        self._served[sender] = self._served_pair[(sender, agent_id)] = self._tick

    async def _acquire(self, agent_id: str, sender: str, *, first: bool) -> None:
        # Nobody that could start waits (each release grants what fits), so a turn
        # that fits now takes its slot without queueing.
        if self._fits(agent_id, sender):
            self._take(agent_id, sender)
            return
        waiter: _Waiter = asyncio.get_running_loop().create_future()
        line = self._queues.setdefault(sender, {}).setdefault(agent_id, deque())
        if first:
            line.appendleft(waiter)  # a turn coming back from a delegation goes first
            self._returning.add(waiter)
        else:
            line.append(waiter)
        self._waiting_senders[sender] += 1
        self._waiting_agents[agent_id] += 1
        try:
            await waiter
        except asyncio.CancelledError:
            self._returning.discard(waiter)
            if waiter.done() and not waiter.cancelled():
                self._release(agent_id, sender)  # granted as it was cancelled: give it back
            else:
                self._unqueue(agent_id, sender, waiter)
            raise

    def _unqueue(self, agent_id: str, sender: str, waiter: _Waiter) -> None:
        agents = self._queues.get(sender)
        line = agents.get(agent_id) if agents is not None else None
        if line is None or waiter not in line:
            return
        line.remove(waiter)
        self._forget_waiter(agent_id, sender)

    def _forget_waiter(self, agent_id: str, sender: str) -> None:
        for counter, key in ((self._waiting_senders, sender), (self._waiting_agents, agent_id)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]  # a process answering many people keeps no entry per person
        agents = self._queues[sender]
        if not agents[agent_id]:
            del agents[agent_id]
        if not agents:
            del self._queues[sender]

    def _release(self, agent_id: str, sender: str) -> None:
        self._total -= 1
        for counter, key in ((self._agents, agent_id), (self._senders, sender)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        if sender not in self._senders and sender not in self._queues:
            # Nothing of theirs runs or waits: no entry kept per person.
            self._served.pop(sender, None)
            for pair in [p for p in self._served_pair if p[0] == sender]:
                del self._served_pair[pair]
        self._grant()

    def _grant(self) -> None:
        """Start the waiting turns that fit, whoever was served least lately first."""
        while self._total < self.limits.total:
            best: tuple[tuple[int, int, int], str, str] | None = None
            for sender, agents in self._queues.items():
                for agent_id, line in agents.items():
                    if not self._fits(agent_id, sender):
                        continue
                    rank = (
                        0 if line[0] in self._returning else 1,
                        self._served.get(sender, -1),
                        self._served_pair.get((sender, agent_id), -1),
                    )
                    if best is None or rank < best[0]:
                        best = (rank, sender, agent_id)
            if best is None:
                return
            _, sender, agent_id = best
            waiter = self._queues[sender][agent_id].popleft()
            self._forget_waiter(agent_id, sender)
            self._returning.discard(waiter)
            if waiter.done():
                continue  # cancelled while waiting: its task unqueues nothing
            self._take(agent_id, sender)
            waiter.set_result(None)


class Lease:
    """The slots one turn holds; :meth:`lend` gives them back for a while."""

    def __init__(self, slots: TurnSlots, agent_id: str, sender: str) -> None:
        self._slots = slots
        self.agent_id = agent_id
        self.sender = sender
        self.held = False
        self._lent = 0  # waits under way (a model may delegate twice at once)

    @asynccontextmanager
    async def lend(self) -> AsyncIterator[None]:
        """Give the slots back for the block (a wait on another agent's work), and take
        them again after it, ahead of turns not yet started."""
        self._lent += 1
        if self._lent == 1 and self.held:
            self.held = False
            self._slots._release(self.agent_id, self.sender)
        try:
            yield
        except asyncio.CancelledError:
            self._lent -= 1  # stopped while waiting: the turn ends, it needs no slot
            raise
        except BaseException:
            await self._back()
            raise
        await self._back()

    async def _back(self) -> None:
        self._lent -= 1
        if self._lent == 0 and not self.held:
            await self._slots._acquire(self.agent_id, self.sender, first=True)
            self.held = True
