"""What a turn is: who runs it, on what, and where its answer goes.

Every agent turn, whatever starts it, is one :class:`TurnSpec` stored with its
ledger row, so the one turn runner can run it again after a crash without the
event (or delegation) that started it still being at hand.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from salon.agents.attachments import Attachment
from salon.agents.backend import ChatMessage, Role, TurnRequest
from salon.agents.runtime import AgentRuntime
from salon.ids import AgentId, RoomId
from salon.turns.replies import ReplyTo


class TurnKind(StrEnum):
    """What started a turn (and so where its answer goes)."""

    MESSAGE = "message"  # a message in a room: the answer is a reply there
    TASK = "task"  # a task another agent delegated: the answer is a status event
    REPORT = "report"  # a delegation's result, told in the room that asked for it
    API = "api"  # an HTTP request (OpenAI-compatible or admin): the caller gets the text
    CRON = "cron"  # a scheduled run of an agent's cron job: the answer is a message in its room


# Kinds whose answer is a streamed reply in a room (the rest collect their text).
REPLY_KINDS = frozenset({TurnKind.MESSAGE, TurnKind.REPORT, TurnKind.CRON})


@dataclass(frozen=True)
class TurnSpec:
    """One turn. ``turn_id`` with ``agent_id`` is the ledger key: the inbound event id
    for a message, ``task:<delegation>`` or ``report:<delegation>`` for delegations,
    ``cron:<agent>:<job>:<scheduled time>`` for a cron run."""

    turn_id: str
    agent_id: AgentId
    kind: TurnKind
    room_id: RoomId
    sender: str
    text: str
    session_key: str
    reply_to: ReplyTo = field(default_factory=ReplyTo)
    delegation_id: str | None = None
    deadline_ts: int | None = None  # ms epoch: the turn must end by then (a delegated task)
    # A stateless turn (an API call that brings its own history) reads and writes no
    # session: ``history`` is the conversation so far, as (role, content) pairs.
    stateless: bool = False
    history: tuple[tuple[str, str], ...] = ()
    # Whose per-sender slots the turn takes when that is not ``sender``: an API call
    # counts against its caller (the token), whatever ``user`` label it gives.
    slot_sender: str | None = None
    # The Matrix user id of the person the turn works for, set by the gateway: a
    # person's message → that person; a delegated task → its request's ``for_user``;
    # a report → its delegation's. None: for nobody in particular (an agent's message,
    # cron, the API). Backends read it as ``TurnRequest.for_user``, never from the text.
    for_user: str | None = None
    # Files sent with the message, downloaded before the turn was ledgered: stored
    # with it, so a re-run after a crash hands the backend the very same files.
    attachments: tuple[Attachment, ...] = ()

    @property
    def key(self) -> tuple[str, AgentId]:
        """The ledger key."""
        return (self.turn_id, self.agent_id)

    def to_json(self) -> str:
        """The spec as stored in the ledger."""
        # Field by field, not asdict(): its deep copy took ~0.1 ms of every turn.
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in _SPEC_FIELDS}
        data["kind"] = self.kind.value
        data["reply_to"] = {f.name: getattr(self.reply_to, f.name) for f in _REPLY_FIELDS}
        data["attachments"] = [a.to_json() for a in self.attachments]
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> TurnSpec:
        """The spec a ledger row stored (ValueError if it is not one)."""
        data: dict[str, Any] = json.loads(raw)
        try:
            return cls(
                turn_id=str(data["turn_id"]),
                agent_id=AgentId(data["agent_id"]),
                kind=TurnKind(data["kind"]),
                room_id=RoomId(data["room_id"]),
                sender=str(data["sender"]),
                text=str(data["text"]),
                session_key=str(data["session_key"]),
                reply_to=ReplyTo(**(data.get("reply_to") or {})),
                delegation_id=data.get("delegation_id"),
                deadline_ts=data.get("deadline_ts"),
                stateless=bool(data.get("stateless")),
                history=tuple((str(r), str(c)) for r, c in data.get("history") or ()),
                slot_sender=data.get("slot_sender"),
                for_user=data.get("for_user"),
                attachments=tuple(Attachment.from_json(a) for a in data.get("attachments") or ()),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a turn spec: {e}") from e


_SPEC_FIELDS = fields(TurnSpec)
_REPLY_FIELDS = fields(ReplyTo)


class OutcomeState(StrEnum):
    REPLIED = "replied"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ReplyFileState:
    """One file a reply sends, as far as it got: stored (``attachment``), uploaded
    (``media``: the content's ``url`` or ``file`` part), sent (``event_id``)."""

    attachment: Attachment
    media: dict[str, Any] | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "attachment": self.attachment.to_json(),
            "media": self.media,
            "event_id": self.event_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplyFileState:
        return cls(
            Attachment.from_json(data["attachment"]), data.get("media"), data.get("event_id")
        )


@dataclass(frozen=True)
class Outcome:
    """How a turn ended: kept in the ledger before it is sent, so a re-run after a
    crash sends the same answer instead of asking the backend again.

    ``text`` is the reply (possibly partial); ``notice`` a visible error notice, if any;
    ``files`` the files sent after the text (their progress is kept as it is made).
    """

    state: OutcomeState
    text: str = ""
    notice: str | None = None
    error: str | None = None
    files: tuple[ReplyFileState, ...] = ()

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "state": self.state.value,
            "text": self.text,
            "notice": self.notice,
            "error": self.error,
        }
        if self.files:
            data["files"] = [f.to_json() for f in self.files]
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Outcome:
        data = json.loads(raw)
        return cls(
            state=OutcomeState(data["state"]),
            text=data.get("text") or "",
            notice=data.get("notice"),
            error=data.get("error"),
            files=tuple(ReplyFileState.from_json(f) for f in data.get("files") or ()),
        )


@dataclass(frozen=True)
class TurnPolicy:
    """Bounds on every turn."""

    max_attempts: int = 3  # runs of one turn across crashes and restarts
    deadline_s: float = 600.0  # wall-clock limit of the backend run
    typing_after_s: float = 0.3  # typing (and busy) only when the first chunk is slower


def turn_request(spec: TurnSpec) -> TurnRequest:
    """The backend's view of a turn (no Matrix types cross this line)."""
    return TurnRequest(
        agent_id=spec.agent_id,
        sender=spec.sender,
        text=spec.text,
        session_key=spec.session_key,
        chat_id="",
        for_user=spec.for_user,
        attachments=spec.attachments,
    )


async def prepare_request(runtime: AgentRuntime, spec: TurnSpec) -> TurnRequest:
    """The backend request of ``spec``: persona, history (its own, for a stateless turn)."""
    if not spec.stateless:
        return await runtime.prepare(turn_request(spec))
    history = [ChatMessage(_role(r), c) for r, c in spec.history]
    return await runtime.prepare(turn_request(spec), history=history)


def _role(role: str) -> Role:
    return "assistant" if role == "assistant" else "system" if role == "system" else "user"


def deadline_of(spec: TurnSpec, policy: TurnPolicy) -> float:
    """Seconds the backend may run for ``spec`` (a delegated task also ends by the
    deadline its delegator set)."""
    deadline = policy.deadline_s
    if spec.deadline_ts is not None:
        deadline = min(deadline, max(spec.deadline_ts / 1000 - time.time(), 0.001))
    return deadline
