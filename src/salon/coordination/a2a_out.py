"""Delegating to remote A2A (Agent2Agent) agents (``a2a_agents:``): a delegation whose
transport is an A2A client call (:mod:`salon.coordination.a2a_client`) instead of a
Matrix event.

Everything else is a delegation's: the row is in the delegations table before the
call (``target_room`` ``a2a:<id>``), with its deadline and hop count; the same
notices go to the origin room; the outcome is handed back once, to the waiting
turn or through a report turn (the manager's waiters and ``reinjected`` mark). A
crash mid-call leaves an open row: ``recover`` calls again with the same message
id, and the outcome is still handed back once (the delegation's deadline ends a
call that never answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from salon._exceptions import ConfigError
from salon.agents.tools import DelegationOutcome
from salon.config.agents import A2AAgentConfig
from salon.coordination.a2a_client import RemoteAgent, RemoteError, call, remote_agents
from salon.coordination.delegation import OUT, DelegationManager
from salon.coordination.protocol import DelegationRequest, new_request
from salon.coordination.records import outcome_of, record_of, stable_id
from salon.store.delegations import DelegationPhase, DelegationRecord
from salon.store.records import now_ms

log = structlog.get_logger("salon.coordination.a2a")

ROOM_PREFIX = "a2a:"  # a remote delegation's target_room: no room, the remote's id


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class A2ADelegationManager(DelegationManager):
    """A :class:`DelegationManager` that also delegates to remote A2A agents."""

    remotes: Mapping[str, RemoteAgent] = {}
    hop_limit: int = 8
    _calls: dict[str, asyncio.Task[None]]

    def use_remotes(
        self, configured: Mapping[str, A2AAgentConfig], given: Mapping[str, str], hop_limit: int
    ) -> None:
        """Delegate to the ``a2a_agents`` over A2A (tokens from ``given`` or the
        environment), with the deployment's hop limit.

        Raises:
            ConfigError: a ``token_env`` names a variable that is not set.
        """
        self.remotes = remote_agents(configured, given)
        self._given = given
        self.hop_limit = hop_limit
        self._calls = getattr(self, "_calls", {})

    def reload_remotes(self, configured: Mapping[str, A2AAgentConfig]) -> None:
        """The ``a2a_agents`` of a reloaded config; one whose token is not set is left
        out (logged) rather than failing the reload."""
        found = {}
        for agent_id, entry in configured.items():
            try:
                found.update(remote_agents({agent_id: entry}, getattr(self, "_given", {})))
            except ConfigError as e:
                log.warning("a2a.remote_left_out", agent=agent_id, error=str(e))
        self.remotes = found

    async def delegate(
        self,
        from_agent: str,
        to_agent: str,
        task: str,
        *,
        context: str | None = None,
        origin_room: str | None = None,
        origin_event: str | None = None,
        parent: DelegationRequest | None = None,
        wait: bool = True,
        for_user: str | None = None,
    ) -> DelegationOutcome:
        if to_agent not in self.remotes or to_agent not in self.can_delegate_to.get(from_agent, ()):
            return await super().delegate(
                from_agent,
                to_agent,
                task,
                context=context,
                origin_room=origin_room,
                origin_event=origin_event,
                parent=parent,
                wait=wait,
                for_user=for_user,
            )
        # As for an agent: a re-run turn asking the same finds the delegation it made.
        same_id = stable_id(origin_event, from_agent, to_agent, task) if origin_event else None
        if same_id and wait and same_id in self._waiting:
            return await self._await(same_id, self._waiting[same_id])
        if same_id and (known := await self.store.delegations.get(same_id)) is not None:
            return await self._follow(known, wait)
        try:
            request = new_request(
                from_agent,
                to_agent,
                task,
                context=context,
                parent=parent,
                deadline_ts=now_ms() + int(self.deadline_s * 1000),
                id=same_id,
                for_user=for_user,
            )
        except ValueError as e:
            return DelegationOutcome(False, f"[FAILED] {to_agent}: {e}")
        if request.hop > self.hop_limit:  # no remote gateway checks it for us
            return DelegationOutcome(False, f"[REJECTED] hop limit {self.hop_limit} exceeded")
        record = record_of(
            request,
            OUT,
            ROOM_PREFIX + to_agent,
            origin_room=origin_room,
            origin_event=origin_event,
        )
        await self.store.delegations.create(record)
        await self.notify(record, "delegation_sent", task=_short(task))
        return await self._follow(record, wait)

    async def _follow(self, record: DelegationRecord, wait: bool) -> DelegationOutcome:
        """The outcome of a remote delegation: its call started (once per process)."""
        if record.terminal:
            await self.store.delegations.mark_reinjected(record.id)
            return outcome_of(record)
        future = self._waiter(record.id) if wait else None
        self._start(record)
        if future is None:
            return DelegationOutcome(True, record.id)
        # It may have ended between the read above and the waiter's making.
        current = await self.store.delegations.get(record.id)
        if current is not None and current.terminal:
            await self.store.delegations.mark_reinjected(record.id)
            self._settle(record.id, outcome_of(current))
            return outcome_of(current)
        return await self._await(record.id, future)

    def _start(self, record: DelegationRecord) -> None:
        calls = self._calls = getattr(self, "_calls", {})
        if record.id not in calls:
            task = asyncio.create_task(self._call(record), name=f"a2a:{record.id}")
            calls[record.id] = task
            task.add_done_callback(lambda _: calls.pop(record.id, None))

    async def _call(self, record: DelegationRecord) -> None:
        """Call the remote, record how it ended, hand the outcome back once."""
        text = record.task if not record.context else f"{record.task}\n\n{record.context}"
        remote = self.remotes.get(record.to_agent)
        await self.store.delegations.set_state(record.id, DelegationPhase.SENT)
        try:
            if remote is None:
                raise RemoteError("no longer configured in a2a_agents")
            left_s = max(0.0, (record.deadline_ts - now_ms()) / 1000)
            result = await asyncio.wait_for(
                call(remote, text, message_id=record.id, context_id=record.root), left_s
            )
        except TimeoutError:
            return  # the deadline loop ends it (TIMEOUT, its notice, the hand-back)
        except Exception as e:  # a failed call is a failed delegation, never a lost one
            log.warning("a2a.delegation_failed", id=record.id, to=record.to_agent, error=str(e))
            if await self.store.delegations.set_state(record.id, "failed", error=str(e)):
                await self.notify(record, "delegation_failed", error=_short(str(e)))
        else:
            if await self.store.delegations.set_state(record.id, "completed", result=result):
                await self.notify(record, "delegation_completed")
        current = await self.store.delegations.get(record.id, direction=OUT)
        if current is not None and current.terminal and not current.reinjected:
            await self._deliver(current, outcome_of(current))

    async def recover(self, pages: int = 5) -> None:
        """After a start: call again the remote delegations a stop interrupted, then
        recover the others as the manager does."""
        for record in await self.store.delegations.open(direction=OUT):
            if record.target_room.startswith(ROOM_PREFIX) and record.from_agent in self.dir.apis:
                self._start(record)
        await super().recover(pages)

    def other_transport(self, record: DelegationRecord) -> bool:
        return record.target_room.startswith(ROOM_PREFIX)

    async def stop_calls(self) -> None:
        """Cancel the calls under way (a stop; ``recover`` calls again after a start)."""
        calls = list(getattr(self, "_calls", {}).values())
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
