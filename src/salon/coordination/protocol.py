"""The delegation protocol: versioned ``com.salon.delegation.*`` event payloads.

A delegating agent's user sends a :class:`DelegationRequest` into the target
agent's room; the target's user answers in the same room with
:class:`DelegationStatus` events. Everything received is validated here:
:func:`parse_request` and :func:`parse_status` never raise — a malformed
payload is dropped with one warning and counted in
``salon_delegation_invalid_total{kind}``. Unknown fields are ignored, so a
newer peer can add fields without breaking this one.

Payloads are validated strictly (no ``"3"`` for ``3``, no ``true`` for ``1``):
Matrix event JSON is typed, and anything else is a bug or a forgery.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import structlog
from prometheus_client import Counter
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from salon.coordination.refs import MAX_REFS, WorkRef, parse_refs

REQUEST = "com.salon.delegation.request"
STATUS = "com.salon.delegation.status"

log = structlog.get_logger("salon.coordination")

DELEGATION_INVALID = Counter(
    "salon_delegation_invalid_total",
    "Delegation events dropped because their payload failed validation",
    ["kind"],
)

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"
AGENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
# A Matrix user id (``@local:server``, at most 255 characters as the spec says).
USER_PATTERN = r"^@[^:\s]+:\S+$"
MAX_CHAIN = 16
MAX_TASK = 20_000
MAX_CONTEXT = 50_000
MAX_RESULT = 100_000
MAX_ERROR = 2_000
MAX_TEXT = 2_000


def _exact_int(value: object) -> object:
    # Literal[1] alone would take ``true`` (True == 1).
    if isinstance(value, bool):
        raise ValueError("v must be the integer 1")
    return value


Version = Annotated[Literal[1], BeforeValidator(_exact_int)]
DelegationId = Annotated[str, Field(pattern=ID_PATTERN)]
AgentName = Annotated[str, Field(pattern=AGENT_PATTERN)]
MatrixUser = Annotated[str, Field(pattern=USER_PATTERN, max_length=255)]


class DelegationState(StrEnum):
    """What a status event says about a delegation."""

    ACCEPTED = "accepted"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"


TERMINAL: frozenset[DelegationState] = frozenset(
    {DelegationState.COMPLETED, DelegationState.FAILED, DelegationState.REJECTED}
)


class DelegationRequest(BaseModel):
    """``com.salon.delegation.request``, version 1.

    ``root`` is the id of the first delegation of the chain (``id`` itself for
    a root, which has no ``parent``). ``chain`` lists the agents from the
    root's delegator to ``to``: A→B is ``[a, b]``, then B→C is ``[a, b, c]``;
    it always ends with ``from``, ``to``. Serialise with :func:`request_content`
    so the JSON says ``from``.

    ``refs`` lists the issues and merge requests the task (and context) name, as
    parsed by :func:`salon.coordination.refs.parse_refs` when the request was made:
    metadata for people and tools, absent when there are none (and in requests
    from versions before it).

    ``for_user`` is the Matrix user id of the person the work is done for: set by
    the delegating gateway from the turn that asked (a person's message, the
    person who typed ``!delegate``, or the ``for_user`` of the task being passed
    on), never parsed from the task text; absent when the work is for nobody in
    particular (an operator's delegation, a cron run) and in older requests.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, strict=True)

    v: Version = 1
    id: DelegationId
    # Not ``alias=``: that would make ``from`` the constructor keyword for type checkers.
    from_: AgentName = Field(
        validation_alias=AliasChoices("from", "from_"), serialization_alias="from"
    )
    to: AgentName
    task: str = Field(min_length=1, max_length=MAX_TASK)
    context: str | None = Field(default=None, max_length=MAX_CONTEXT)
    parent: DelegationId | None = None
    root: DelegationId
    chain: list[AgentName] = Field(min_length=2, max_length=MAX_CHAIN)
    hop: int = Field(ge=1)
    deadline_ts: int = Field(gt=0)
    refs: list[WorkRef] | None = Field(default=None, max_length=MAX_REFS)
    for_user: MatrixUser | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.chain[-2:] != [self.from_, self.to]:
            raise ValueError("chain must end with from, to")
        if self.parent is None and self.root != self.id:
            raise ValueError("a request without parent is a root: root must equal id")
        return self


class DelegationStatus(BaseModel):
    """``com.salon.delegation.status``, version 1.

    ``completed`` carries ``result``; ``failed`` and ``rejected`` carry
    ``error`` (the reason); ``progress`` may carry ``text``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    v: Version = 1
    id: DelegationId
    state: DelegationState = Field(strict=False)  # a plain string on the wire
    result: str | None = Field(default=None, max_length=MAX_RESULT)
    error: str | None = Field(default=None, max_length=MAX_ERROR)
    text: str | None = Field(default=None, max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _needs_outcome(self) -> Self:
        if self.state is DelegationState.COMPLETED and self.result is None:
            raise ValueError("a completed status needs a result")
        if self.state in (DelegationState.FAILED, DelegationState.REJECTED) and self.error is None:
            raise ValueError(f"a {self.state} status needs an error")
        return self


def _printable(text: str, limit: int) -> str:
    # Untrusted text may hold lone surrogates, which would break the log sink.
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def _invalid(kind: str, content: object, reason: str) -> None:
    DELEGATION_INVALID.labels(kind=kind).inc()
    delegation_id = content.get("id") if isinstance(content, dict) else None
    log.warning(
        "delegation.invalid",
        kind=kind,
        id=_printable(delegation_id, 100) if isinstance(delegation_id, str) else None,
        reason=_printable(reason, 500),
    )


def _errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_request(content: object) -> DelegationRequest | None:
    """The request in an event's content, or None (logged and counted) if it is invalid."""
    try:
        return DelegationRequest.model_validate(content)
    except ValidationError as e:
        _invalid("request", content, _errors(e))
    except Exception as e:  # untrusted input must never break a loop
        _invalid("request", content, f"{type(e).__name__}: {e}")
    return None


def parse_status(content: object) -> DelegationStatus | None:
    """The status in an event's content, or None (logged and counted) if it is invalid."""
    try:
        return DelegationStatus.model_validate(content)
    except ValidationError as e:
        _invalid("status", content, _errors(e))
    except Exception as e:  # untrusted input must never break a loop
        _invalid("status", content, f"{type(e).__name__}: {e}")
    return None


def request_content(req: DelegationRequest) -> dict[str, Any]:
    """The request as event content (JSON-ready, ``from`` not ``from_``, no nulls)."""
    return req.model_dump(mode="json", by_alias=True, exclude_none=True)


def status_content(st: DelegationStatus) -> dict[str, Any]:
    """The status as event content (JSON-ready, no nulls)."""
    return st.model_dump(mode="json", by_alias=True, exclude_none=True)


def new_delegation_id() -> str:
    """A fresh, unguessable delegation id such as ``dlg_Xy3…`` (24 characters)."""
    return "dlg_" + secrets.token_urlsafe(15)


def new_request(
    from_: str,
    to: str,
    task: str,
    *,
    deadline_ts: int,
    context: str | None = None,
    parent: DelegationRequest | None = None,
    id: str | None = None,
    for_user: str | None = None,
) -> DelegationRequest:
    """A request from ``from_`` to ``to``: a root, or a child of ``parent`` (B passing on A's task).

    For a child, ``from_`` must be the parent's ``to``; root, chain and hop follow from the parent,
    and so does ``for_user`` when none is given (the task is still done for the same person).
    ``refs`` are the work references found in ``task`` and ``context`` (None if there are none).
    Raises :class:`pydantic.ValidationError` if the result would be invalid (e.g. a chain over 16).
    """
    delegation_id = id or new_delegation_id()
    if parent is None:
        root, chain, hop = delegation_id, [from_, to], 1
    else:
        if parent.to != from_:
            raise ValueError(f"{from_} cannot continue a delegation addressed to {parent.to}")
        root, chain, hop = parent.root, [*parent.chain, to], parent.hop + 1
        for_user = for_user or parent.for_user
    return DelegationRequest.model_validate(
        {
            "id": delegation_id,
            "from": from_,
            "to": to,
            "task": task,
            "context": context,
            "parent": None if parent is None else parent.id,
            "root": root,
            "chain": chain,
            "hop": hop,
            "deadline_ts": deadline_ts,
            "refs": [ref.model_dump() for ref in parse_refs(task, context)] or None,
            "for_user": for_user,
        }
    )


def check_request(
    req: DelegationRequest, *, receiver: str, hop_limit: int, now_ms: int
) -> str | None:
    """Why ``receiver`` must reject ``req`` (the text for the rejected status), or None to accept.

    Checked in order: the request is for another agent; its hop count is over
    ``hop_limit``; ``to`` already appears earlier in the chain (a cycle); its
    deadline has passed.
    """
    if req.to != receiver:
        return f"delegation is addressed to {req.to}, not {receiver}"
    if req.hop > hop_limit:
        return f"hop limit {hop_limit} exceeded"
    if req.to in req.chain[:-1]:
        return "delegation cycle: " + " → ".join(req.chain)
    if req.deadline_ts <= now_ms:
        return "deadline already passed"
    return None
