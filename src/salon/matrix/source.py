"""The event-source seam: client mode (/sync per identity) or appservice mode
(transactions pushed by the homeserver, :mod:`salon.matrix.appservice`).

An event source turns the homeserver into batches of typed events handed to an
:class:`EventSink`. The source records its position (sync token, transaction
id) only after ``admit`` returned, so a crash replays the batch and the sink's
idempotent inbox drops the duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent, Invite


class EventSink(Protocol):
    """Where an event source delivers what it receives."""

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        """Durably accept a batch; must return only once it is stored."""

    async def invited(self, invite: Invite) -> None:
        """An identity was invited to a room."""


class PositionStore(Protocol):
    """Where a source keeps its stream position per identity: the sync token and,
    per room, a mark (the newest event delivered: its id and origin_server_ts) and
    the identity's own join time. A gap is backfilled down to the mark; events
    older than the join are never delivered."""

    async def get_sync_token(self, user_id: str) -> str | None:
        """The last recorded position."""

    async def set_sync_token(self, user_id: str, token: str) -> None:
        """Record a position (after the batch before it was admitted)."""

    async def room_marks(self, user_id: str) -> Mapping[str, tuple[str, int]]:
        """Room id → (event id, origin_server_ts) of the newest event delivered."""

    async def room_joins(self, user_id: str) -> Mapping[str, int]:
        """Room id → when the identity last joined (ms)."""

    async def advance(
        self,
        user_id: str,
        token: str | None,
        marks: Mapping[str, tuple[str, int]],
        joins: Mapping[str, int],
    ) -> None:
        """Record a batch's marks, joins and the token after it, at once (after the
        batch was admitted)."""


@dataclass(frozen=True)
class LoopStatus:
    """What an identity's receive loop is doing, for `salon status` and tests."""

    identity: UserId
    running: bool
    restarts: int
    last_error: str | None
    backing_off: bool


class EventSource(Protocol):
    """A running stream of inbound events for a set of identities."""

    async def start(self, sink: EventSink) -> None:
        """Begin delivering events to ``sink``."""

    async def wait_ready(self, timeout: float) -> None:
        """Return once every identity has caught up with the homeserver once."""

    async def stop(self) -> None:
        """Stop delivering; in-flight batches finish or are replayed later."""

    def status(self) -> list[LoopStatus]:
        """Per-identity loop state."""


class IdentitySource(EventSource, Protocol):
    """An event source that follows identities added and removed while running."""

    async def add(self, api: MatrixAPI, timeout: float) -> None:
        """Receive one more identity's events; returns once they flow."""

    async def remove(self, user_id: UserId) -> None:
        """Stop receiving an identity's events."""
