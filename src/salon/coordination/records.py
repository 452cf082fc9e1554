"""Delegation records: a request as a store row, a row as a request, a row as an outcome."""

from __future__ import annotations

import hashlib

from salon.agents.tools import DelegationOutcome
from salon.coordination.protocol import DelegationRequest
from salon.coordination.refs import refs_of
from salon.store.delegations import DelegationDirection, DelegationPhase, DelegationRecord


def stable_id(origin_event: str, from_agent: str, to_agent: str, task: str) -> str:
    """A delegation id derived from the turn that asks, so asking again finds it."""
    digest = hashlib.sha256(f"{origin_event}\x00{from_agent}\x00{to_agent}\x00{task}".encode())
    return "dlg_" + digest.hexdigest()[:20]


def outcome_of(record: DelegationRecord) -> DelegationOutcome:
    """The outcome a finished delegation stands for."""
    if record.state is DelegationPhase.COMPLETED:
        return DelegationOutcome(True, record.result or "")
    tag = {DelegationPhase.TIMEOUT: "TIMEOUT", DelegationPhase.REJECTED: "REJECTED"}.get(
        record.state, "FAILED"
    )
    detail = record.error or record.to_agent
    return DelegationOutcome(False, f"[{tag}] {detail}")


def request_of(record: DelegationRecord) -> DelegationRequest:
    """The request a stored delegation was (or is to be) sent as.

    Stored refs that no longer validate are left out rather than fail the request.
    """
    refs = [ref.model_dump() for ref in refs_of(list(record.refs))]
    return DelegationRequest.model_validate(
        {
            "id": record.id,
            "from": record.from_agent,
            "to": record.to_agent,
            "task": record.task,
            "context": record.context,
            "parent": record.parent,
            "root": record.root,
            "chain": list(record.chain),
            "hop": record.hop,
            "deadline_ts": record.deadline_ts,
            "refs": refs or None,
            "for_user": record.for_user,
        }
    )


def record_of(
    request: DelegationRequest,
    direction: DelegationDirection,
    target_room: str,
    *,
    origin_room: str | None = None,
    origin_event: str | None = None,
) -> DelegationRecord:
    """The store row for a request, on the delegating (out) or the asked (in) side."""
    return DelegationRecord(
        id=request.id,
        direction=direction,
        from_agent=request.from_,
        to_agent=request.to,
        task=request.task,
        context=request.context,
        root=request.root,
        chain=tuple(request.chain),
        hop=request.hop,
        parent=request.parent,
        target_room=target_room,
        deadline_ts=request.deadline_ts,
        origin_room=origin_room,
        origin_event=origin_event,
        refs=tuple(ref.model_dump(mode="json", exclude_none=True) for ref in request.refs or ()),
        for_user=request.for_user,
    )
