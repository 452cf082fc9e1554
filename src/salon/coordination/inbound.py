"""Delegations addressed to our agents: validate, accept, run as a turn, answer.

A valid request is recorded, answered ``accepted`` and handed to the turn runner
as a ledgered task turn; its outcome comes back through :meth:`answer`, which
sends the final status event (with a transaction id derived from the delegation,
so a re-send after a crash is one event). A second request event carrying an id
already known for that target (a forged copy of a visible request) is ignored,
never answered: answering would end the real delegation.

A peer's agent (hosted by another gateway) may task only the agents its
``peers.<id>.may_task`` lists (none by default); anything else is answered
``rejected``, logged and counted in ``salon_delegations_rejected_total``.
A request's ``for_user`` (the person the task is done for) is kept as the
sending agent asserted it: for our own agents the gateway set it; for a
peer's, the peer's gateway did, and it is trusted as far as that peer is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import structlog

from salon.config.models import PeerConfig
from salon.coordination.directory import Directory
from salon.coordination.protocol import (
    STATUS,
    DelegationRequest,
    DelegationState,
    DelegationStatus,
    check_request,
    parse_request,
    status_content,
)
from salon.coordination.records import record_of
from salon.ids import RoomId
from salon.matrix.delivery import Delivery
from salon.matrix.events import InboundEvent
from salon.matrix.txn import txn_id
from salon.metrics import DELEGATIONS_REJECTED, EVENTS_DROPPED
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationPhase
from salon.store.records import now_ms

log = structlog.get_logger("salon.coordination")

IN = DelegationDirection.IN
# Matrix caps an event at 64 KiB; a result is cut well below that.
MAX_RESULT_CHARS = 30000
# Starts the task turn of an accepted request (the gateway's turn runner).
SubmitTask = Callable[[DelegationRequest, RoomId], Awaitable[None]]


class InboundDelegations:
    """Requests other agents send to ours, each run at most once to completion."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        *,
        hop_limit: int,
        submit: SubmitTask,
        peers: Mapping[str, PeerConfig] | None = None,
    ) -> None:
        self.store = store
        self.dir = directory
        self.hop_limit = hop_limit
        self.submit = submit
        self.peers = dict(peers or {})
        self.delivery = Delivery()

    async def on_request(self, event: InboundEvent) -> str:
        """A request in one of our agents' rooms; returns what became of it (a reason)."""
        request = parse_request(event.content)
        if request is None:
            return "invalid"  # counted and logged by the protocol
        if request.to not in self.dir.apis or event.room_id != self.dir.rooms.get(request.to):
            return "not ours"  # for an agent another gateway hosts
        known = await self.store.delegations.get(request.id, direction=IN)
        if known is not None and known.request_event_id not in (None, event.event_id):
            EVENTS_DROPPED.labels(reason="delegation_duplicate").inc()
            log.warning("delegation.duplicate", id=request.id, event_id=event.event_id)
            return "duplicate"
        sender_agent = self.dir.agent_of(event.sender)
        if sender_agent is None or sender_agent != request.from_:
            EVENTS_DROPPED.labels(reason="delegation_forged").inc()
            log.warning("delegation.forged", id=request.id, sender=event.sender)
            return "forged"
        if known is None:
            if (reason := self._peer_refusal(sender_agent, request.to)) is not None:
                DELEGATIONS_REJECTED.labels(reason="peer_not_allowed").inc()
                log.warning(
                    "delegation.peer_not_allowed", id=request.id, peer=sender_agent, to=request.to
                )
                await self._status(request, DelegationState.REJECTED, error=reason)
                return "rejected"
            reason = check_request(
                request, receiver=request.to, hop_limit=self.hop_limit, now_ms=now_ms()
            )
            if reason is not None:
                DELEGATIONS_REJECTED.labels(reason="checks").inc()
                log.info("delegation.rejected", id=request.id, reason=reason)
                await self._status(request, DelegationState.REJECTED, error=reason)
                return "rejected"
            await self.store.delegations.create(record_of(request, IN, event.room_id))
            await self.store.delegations.set_request_event(request.id, event.event_id, direction=IN)
        elif known.terminal:
            return "answered"  # a replayed request we already answered
        # Idempotent from here on: a replay after a crash repeats the same sends.
        await self._status(request, DelegationState.ACCEPTED)
        await self.store.delegations.set_state(request.id, DelegationPhase.ACCEPTED, direction=IN)
        await self.submit(request, event.room_id)
        return "accepted"

    def _peer_refusal(self, sender_agent: str, to: str) -> str | None:
        """Why an agent another gateway hosts may not task ``to`` (None: ours, or allowed)."""
        if sender_agent in self.dir.apis:
            return None  # our own agent: its delegations follow can_delegate_to
        peer = self.peers.get(sender_agent)
        if peer is not None and peer.may_task_agent(to):
            return None
        return (
            f"{sender_agent} is an agent of another gateway and may not task {to}"
            f" here (not in peers.{sender_agent}.may_task)"
        )

    async def answer(
        self, request: DelegationRequest, *, result: str | None, error: str | None
    ) -> None:
        """Send the task's final status (completed with ``result``, else failed)."""
        state = DelegationState.COMPLETED if error is None else DelegationState.FAILED
        result = (result or "")[:MAX_RESULT_CHARS] if error is None else None
        error = error[:2000] if error is not None else None
        await self._status(request, state, result=result, error=error, wait=True)
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
        wait: bool = False,
    ) -> None:
        """Send a status. ``wait``: through an outage (the task's final answer, sent by
        its turn); otherwise an outage is raised, and the inbox tries the event again."""
        status = DelegationStatus(id=request.id, state=state, result=result, error=error)
        api, room = self.dir.apis[request.to], self.dir.rooms[request.to]
        content, txn = status_content(status), txn_id(request.id, request.to, state.value)
        if wait:
            await self.delivery.send(api, room, STATUS, content, txn_id=txn)
        else:
            await api.send_event(room, STATUS, content, txn_id=txn)
