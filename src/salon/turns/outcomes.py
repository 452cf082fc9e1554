"""Sending a turn's outcome where it belongs: a reply in a room, or (for a delegated
task) whatever its kind's sender does, such as a status event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from salon import responses
from salon.agents.runtime import AgentRuntime
from salon.ids import EventId
from salon.matrix.api import MatrixAPI
from salon.matrix.delivery import Delivery
from salon.metrics import BACKEND_ERRORS
from salon.turns.files import ReplyFiles
from salon.turns.replies import reply_content, txn_id
from salon.turns.spec import REPLY_KINDS, Outcome, OutcomeState, TurnKind, TurnSpec
from salon.turns.stream import ReplyStream, StreamLimits

KindSender = Callable[[TurnSpec, Outcome], Awaitable[None]]


class OutcomeSender:
    """Turns an :class:`Outcome` into Matrix events, each with a turn-derived txn id."""

    def __init__(self, delivery: Delivery, files: ReplyFiles, locale: str = "en") -> None:
        self.delivery = delivery
        self.files = files
        self.locale = locale
        # Kinds whose outcome is not a reply in a room (a delegated task: a status event).
        self.by_kind: dict[TurnKind, KindSender] = {}

    async def send(
        self, spec: TurnSpec, outcome: Outcome, stream: ReplyStream | None, api: MatrixAPI
    ) -> EventId | None:
        """Send ``outcome``; returns the event that answers the turn (if any)."""
        if spec.kind not in REPLY_KINDS:
            sender = self.by_kind.get(spec.kind)
            if sender is None:
                raise KeyError(f"no outcome sender for {spec.kind.value} turns")
            await sender(spec, outcome)
            return None
        assert stream is not None
        if outcome.state is not OutcomeState.FAILED:
            first = await stream.finish(outcome.text) if outcome.text else None
            sent = await self.files.send(spec, outcome, api) if outcome.files else None
            return first or sent
        if stream.first_id is not None and outcome.text:
            await stream.finish(outcome.text)  # settle the partial reply before the notice
        if not outcome.notice:
            return stream.first_id
        content = reply_content(
            spec.reply_to, spec.agent_id, outcome.notice, notice=True, turn=spec.turn_id
        )
        return await self.delivery.send(
            api,
            spec.room_id,
            "m.room.message",
            content,
            txn_id=txn_id(spec.turn_id, spec.agent_id, "error"),
        )


def must_store(
    spec: TurnSpec, outcome: Outcome, stream: ReplyStream | None, limits: StreamLimits
) -> bool:
    """Whether the outcome must be kept before it is sent. A reply that is one new
    message needs no copy (a re-run's final edit always follows it, so it cannot
    end partial); one that ends an already visible reply with an edit, spans several
    messages or is not a reply at all does: a re-run must send the same text."""
    if outcome.files:
        return True  # each file's upload and send is recorded in the stored outcome
    if stream is None or stream.first_id is not None or outcome.notice or stream.resumed:
        # A re-run's reply may follow a crashed run's edits (or its own, if it crashes
        # too): only a stored text keeps every later run on the same final version.
        return True
    return len(outcome.text) > limits.max_message_chars


async def caller_reads_it(spec: TurnSpec, outcome: Outcome) -> None:
    """An API turn's outcome goes to its watcher (the HTTP caller), not to Matrix."""


def failure(
    locale: str, runtime: AgentRuntime, partial: str, shown: str, error: str, kind: str
) -> Outcome:
    """A failed turn's outcome: the partial text, a visible notice, the error (counted)."""
    BACKEND_ERRORS.labels(agent=runtime.agent_id, kind=kind).inc()
    notice = responses.text("backend_error", locale, agent=runtime.label, error=shown)
    return Outcome(OutcomeState.FAILED, partial, notice=notice, error=error)
