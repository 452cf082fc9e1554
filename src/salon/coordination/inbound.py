"""Delegations addressed to our agents: validate, accept, run, answer with a status."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from salon._exceptions import BackendError, MatrixError
from salon.coordination.delegation import Directory
from salon.coordination.protocol import (
    STATUS,
    DelegationRequest,
    DelegationState,
    DelegationStatus,
    check_request,
    parse_request,
    status_content,
)
from salon.coordination.records import record_of, request_of
from salon.ids import RoomId
from salon.matrix.events import InboundEvent
from salon.matrix.txn import txn_id
from salon.metrics import EVENTS_DROPPED
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationPhase
from salon.store.records import now_ms

log = structlog.get_logger("salon.coordination")

IN = DelegationDirection.IN
# Matrix caps an event at 64 KiB; a result is cut well below that.
MAX_RESULT_CHARS = 30000
TaskRunner = Callable[[str, DelegationRequest, RoomId], Awaitable[str]]


class InboundDelegations:
    """Runs tasks other agents hand to ours, each at most once to completion."""

    def __init__(
        self, store: Store, directory: Directory, *, hop_limit: int, run_task: TaskRunner
    ) -> None:
        self.store = store
        self.dir = directory
        self.hop_limit = hop_limit
        self.run_task = run_task
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def on_request(self, event: InboundEvent) -> None:
        """A request in one of our agents' rooms."""
        request = parse_request(event.content)
        if request is None or request.to not in self.dir.apis:
            return  # invalid (counted) or for an agent another gateway hosts
        if event.room_id != self.dir.rooms.get(request.to):
            return
        sender_agent = self.dir.agent_of(event.sender)
        if sender_agent is None or sender_agent != request.from_:
            EVENTS_DROPPED.labels(reason="delegation_forged").inc()
            log.warning("delegation.forged", id=request.id, sender=event.sender)
            await self._status(request, DelegationState.REJECTED, error="not sent by a known agent")
            return
        reason = check_request(
            request, receiver=request.to, hop_limit=self.hop_limit, now_ms=now_ms()
        )
        if reason is not None:
            log.info("delegation.rejected", id=request.id, reason=reason)
            await self._status(request, DelegationState.REJECTED, error=reason)
            return
        record = record_of(request, IN, event.room_id)
        if not await self.store.delegations.create(record):
            existing = await self.store.delegations.get(request.id, direction=IN)
            if existing is not None and existing.terminal:
                return  # a replayed request we already answered
        self._start(request, event.room_id)

    def _start(self, request: DelegationRequest, room: RoomId) -> None:
        if request.id in self._tasks:
            return
        task = asyncio.create_task(self._run(request, room), name=f"delegation:{request.id}")
        self._tasks[request.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(request.id, None))

    async def _run(self, request: DelegationRequest, room: RoomId) -> None:
        try:
            await self._status(request, DelegationState.ACCEPTED)
            await self.store.delegations.set_state(
                request.id, DelegationPhase.ACCEPTED, direction=IN
            )
            try:
                result = await self.run_task(request.to, request, room)
            except BackendError as e:
                await self._finish(request, DelegationState.FAILED, error=str(e)[:2000])
                return
            await self._finish(request, DelegationState.COMPLETED, result=result[:MAX_RESULT_CHARS])
        except MatrixError as e:
            # The answer could not be sent: the row stays open and resumes on the next start.
            log.warning("delegation.answer_failed", id=request.id, error=str(e))

    async def _finish(
        self,
        request: DelegationRequest,
        state: DelegationState,
        *,
        result: str | None = None,
        error: str | None = None,
    ) -> None:
        await self._status(request, state, result=result, error=error)
        await self.store.delegations.set_state(
            request.id, state.value, result=result, error=error, direction=IN
        )
        log.info("delegation.answered", id=request.id, state=state.value)

    async def _status(
        self,
        request: DelegationRequest,
        state: DelegationState,
        *,
        result: str | None = None,
        error: str | None = None,
    ) -> None:
        status = DelegationStatus(id=request.id, state=state, result=result, error=error)
        api = self.dir.apis[request.to]
        await api.send_event(
            self.dir.rooms[request.to],
            STATUS,
            status_content(status),
            txn_id=txn_id(request.id, request.to, state.value),
        )

    async def resume(self) -> None:
        """Restart tasks a crash interrupted (accepted, never answered)."""
        for record in await self.store.delegations.open(direction=IN):
            if record.to_agent in self.dir.apis:
                self._start(request_of(record), RoomId(record.target_room))

    async def stop(self) -> None:
        """Cancel running tasks; they resume on the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
