"""From the event source to handlers: admit durably, then dispatch by event type.

The dispatcher is the :class:`EventSink` of whatever event source runs (client
mode now, appservice later). ``admit`` only stores; a supervised worker drains
the inbox through a handler table (like mautrix's ``add_event_handler``), so a
crash between the two loses nothing. Each room's events are handled in order in
a lane of their own (see lanes), rooms side by side, so a slow step in one room
(the AI router, a join, an outage wait) holds up no other. A transient failure
(store busy, homeserver down) leaves the event pending and tries it again later
with backoff, holding back only its own room's later events; only a permanent
error drops it, with its reason stored and counted. Turns go to the turn runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from salon._exceptions import is_transient
from salon.config.models import SalonConfig
from salon.gateway.lanes import Lanes
from salon.gateway.retention import max_age_ms
from salon.ids import UserId
from salon.matrix.events import InboundEvent, Invite, parse_event
from salon.metrics import CLAIM_LOST, EVENTS_ADMITTED, EVENTS_DROPPED, INBOX_DEFERRED
from salon.roster import Roster
from salon.store import Store
from salon.store.leases import Holder
from salon.store.records import InboxItem, InboxRow, InboxState, now_ms
from salon.supervisor import LoopHandle
from salon.turns.replies import TURN_KEY, hop_of
from salon.turns.voices import GATEWAY_MARK

log = structlog.get_logger("salon.gateway.dispatcher")

Handled = tuple[InboxState, str]
EventHandler = Callable[[InboundEvent], Awaitable[Handled]]
OnInvite = Callable[[Invite], Awaitable[None]]
OnStart = Callable[[], Awaitable[object]]

# Retry of an event after a transient failure: 1 s doubling to 60 s.
RETRY_INITIAL_MS = 1000
RETRY_MAX_MS = 60_000
# An agent's message is admitted only up to this hop (routing applies the exact limit);
# a runaway bot conversation should not even fill the inbox.
ADMIT_MAX_HOP = 16
RECENT_IDS = 4096
# How long the earliest deferred row's due time, once read, is taken as known (unless
# this process defers one): one read a second, not one per pass. A row another process
# deferred and then gave up is seen at most this late.
DUE_RECHECK_MS = 1000
# A lone dispatcher's claims (a gateway passes its cluster's holder).
SQLITE_OWNER = "local"
DEFAULT_LEASE_MS = 10_000


@dataclass(frozen=True)
class DispatchLimits:
    """How much the dispatcher takes on. ``max_rooms``: rooms handled at once;
    ``per_room``: rows of one room read ahead; ``batch``: rows read per pass;
    ``max_age_ms``: events older than this (by their own time) are not admitted, as
    the retention janitor deletes inbox rows that old, so one may have been handled."""

    max_rooms: int = 32
    per_room: int = 16
    batch: int = 100
    max_age_ms: int | None = None

    @classmethod
    def from_config(cls, config: SalonConfig) -> DispatchLimits:
        return cls(
            max_rooms=config.dispatch.max_rooms,
            per_room=config.dispatch.per_room,
            max_age_ms=max_age_ms(config.store),
        )


class Dispatcher:
    """Admits inbound events and dispatches them to handlers by type."""

    def __init__(
        self,
        store: Store,
        *,
        roster: Roster,
        created_at: Mapping[UserId, int],
        on_invite: OnInvite | None = None,
        limits: DispatchLimits | None = None,
        holder: Holder | None = None,
    ) -> None:
        """``holder``: this process's claims (rooms other processes hold are theirs)."""
        limits = limits or DispatchLimits()
        self.store = store
        self._max_age_ms = limits.max_age_ms
        self.roster = roster
        self._created_at = created_at
        self._on_invite = on_invite
        self._batch = limits.batch
        self._max_rooms = limits.max_rooms
        self._per_room = limits.per_room
        self.holder = holder or Holder(SQLITE_OWNER, DEFAULT_LEASE_MS)
        self._lanes: Lanes | None = None
        self._handlers: dict[str, EventHandler] = {}
        self._on_start: list[OnStart] = []
        self._wake = asyncio.Event()
        self._handling = asyncio.Event()  # clear while paused (shutting down)
        self._handling.set()
        self._recent: dict[str, None] = {}  # event ids admitted lately, oldest first
        # Events admitted here and not handled yet, as parsed: their rows need not be
        # parsed again (JSON and all) when claimed, nearly always moments later.
        self._parsed: dict[str, InboundEvent] = {}
        self._due: int | None = None  # the earliest deferred row's due time, as last read
        self._due_read_at: int | None = None  # when (ms) it was read; None: read it again

    def add_event_handler(self, event_type: str, handler: EventHandler) -> None:
        """Handle events of ``event_type`` (only those types are admitted at all)."""
        self._handlers[event_type] = handler

    def on_start(self, hook: OnStart) -> None:
        """Run ``hook`` each time the worker (re)starts, before it drains the inbox."""
        self._on_start.append(hook)

    # --- EventSink -------------------------------------------------------

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        """Store the batch's candidate events in the inbox (idempotent)."""
        # Several of our identities see each event of a shared room; the inbox drops the
        # repeats, but skipping the ones this process admitted already saves a write.
        fresh = [
            e
            for e in events
            if e.event_id not in self._recent and self._worth_admitting(identity, e)
        ]
        added = await self.store.inbox.admit([_inbox_item(e) for e in fresh])
        for event in fresh:
            self._recent[event.event_id] = None
            self._parsed[event.event_id] = event
        while len(self._recent) > RECENT_IDS:
            del self._recent[next(iter(self._recent))]
        while len(self._parsed) > RECENT_IDS:
            del self._parsed[next(iter(self._parsed))]
        if added:
            EVENTS_ADMITTED.inc(added)
            self._wake.set()

    async def invited(self, invite: Invite) -> None:
        """Hand an invitation to whoever joins rooms (never joined inside the sync loop)."""
        if self._on_invite is not None:
            await self._on_invite(invite)

    def _worth_admitting(self, identity: UserId, event: InboundEvent) -> bool:
        if event.type not in self._handlers or event.state_key is not None:
            return False
        if event.sender == self.roster.router_user_id or _gateway_notice(self.roster, event):
            return False  # the gateway's own notices are never news
        if event.type == "m.room.message":
            if event.replaces:
                return False  # an edit is not a new message
            if self.roster.is_ours(event.sender) and not _may_address(event):
                return False  # our agent's own reply, addressed to no one: not news
            if self.roster.is_ours(event.sender) and hop_of(event) >= ADMIT_MAX_HOP:
                return False
        if event.origin_ts < self._created_at.get(identity, 0):
            EVENTS_DROPPED.labels(reason="history").inc()
            return False  # history from before this identity existed is never answered
        if self._max_age_ms is not None and event.origin_ts < now_ms() - self._max_age_ms:
            EVENTS_DROPPED.labels(reason="expired").inc()
            return False  # older than the retention window: its row may be gone, not its reply
        return True

    # --- worker ------------------------------------------------------------

    def pause(self) -> None:
        """Stop handling the inbox (a graceful shutdown): events go on being admitted
        and stay pending, to be handled after the next start. The row each room is
        handling finishes (:meth:`settle` waits for them); the rest wait."""
        self._handling.clear()
        self._wake.set()

    def resume(self) -> None:
        """Handle the inbox again after :meth:`pause`."""
        self._handling.set()
        self._wake.set()

    @property
    def paused(self) -> bool:
        """Whether the inbox is left alone (see :meth:`pause`)."""
        return not self._handling.is_set()

    def wake(self) -> None:
        """Look at the inbox now (something was admitted by another path)."""
        self._wake.set()

    async def run(self, handle: LoopHandle) -> None:
        """Drain the inbox forever (a supervised loop: a store error restarts it):
        each room's events in order in a lane of its own, rooms side by side."""
        await self._handling.wait()
        for hook in self._on_start:
            await hook()
        self._lanes = lanes = Lanes(
            self._handle_row,
            max_rooms=self._max_rooms,
            paused=lambda: self.paused,
            on_free=self._wake.set,
        )
        try:
            while True:
                await self._handling.wait()
                if lanes.failure is not None:
                    raise lanes.failure
                self._wake.clear()  # before reading, so an admit during the read is not missed
                fresh = lanes.before_read()
                rows = await self.store.inbox.claim(
                    self.holder.owner,
                    self.holder.lease_ms,
                    rooms=self._batch,
                    per_room=self._per_room,
                    skip=lanes.in_hand(fresh),
                )
                for row in rows:
                    lanes.offer(row, fresh)
                lanes.after_read(fresh)
                handle.healthy()
                # Rows due now are in lanes (a lane that ends wakes this loop); wait for
                # the next admit, or for the earliest deferred row to come due.
                due = await self._next_due()
                timeout = None if due is None else max((due - now_ms()) / 1000, 0.01)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel
                # that lands as the wake fires (an admit or pause during shutdown).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
        finally:
            await lanes.close()

    async def _next_due(self) -> int | None:
        """When the earliest deferred row is due: read again when this process deferred
        one, the known time passed, or the last read is :data:`DUE_RECHECK_MS` old."""
        now = now_ms()
        read_at, due = self._due_read_at, self._due
        if read_at is None or now - read_at >= DUE_RECHECK_MS or (due is not None and due <= now):
            self._due_read_at = now  # before the read: a deferral during it reads again
            self._due = due = await self.store.inbox.next_due(after=now)
        return due

    async def settle(
        self, timeout_s: float | None = None, interrupt: asyncio.Event | None = None
    ) -> bool:
        """After :meth:`pause`: wait for the rows being handled to finish (each room's
        current one), up to ``timeout_s`` or ``interrupt``; True if none is left."""
        return True if self._lanes is None else await self._lanes.idle(timeout_s, interrupt)

    async def _handle_row(self, row: InboxRow) -> bool:
        """Handle and mark one row; False if it was deferred for a retry, or another
        process holds it now (the room's later rows are its too)."""
        item = row.item
        owner = self.holder.owner
        # Our claim may have run out while the row waited (a pause, a slow store) and
        # another process claimed the room since: then it is that one's to handle. A
        # lone SQLite process has nobody to lose it to, and saves the write.
        lone = owner == SQLITE_OWNER
        if not lone and not await self.store.inbox.hold(item.event_id, owner, self.holder.until()):
            return await self._lost(item, "hold")
        event = self._parsed.pop(item.event_id, None)
        if event is None or event.received_by != item.received_by:
            event = _event_of(item)  # admitted by another process, or another identity
        if event is None:
            EVENTS_DROPPED.labels(reason="malformed").inc()
            log.warning("inbox.malformed", event_id=item.event_id)
            return await self._close(item, InboxState.DROPPED, "malformed")
        handler = self._handlers.get(event.type)
        if handler is None:
            return await self._close(item, InboxState.DROPPED, "no handler")
        try:
            state, reason = await handler(event)
        except Exception as e:
            if is_transient(e):
                delay = min(RETRY_INITIAL_MS * 2**row.attempts, RETRY_MAX_MS)
                INBOX_DEFERRED.inc()
                log.warning(
                    "inbox.deferred", event_id=item.event_id, error=str(e), retry_in_ms=delay
                )
                next_at = now_ms() + delay
                if not await self.store.inbox.defer(
                    item.event_id, next_at=next_at, error=str(e), owner=owner
                ):
                    await self._lost(item, "defer")
                self._due_read_at = None  # the earliest due time may have changed
                return False
            EVENTS_DROPPED.labels(reason="error").inc()
            log.exception("inbox.handle_failed", event_id=item.event_id)
            reason = f"error: {type(e).__name__}: {e}"[:500]
            return await self._close(item, InboxState.DROPPED, reason)
        return await self._close(item, state, reason)

    async def _close(self, item: InboxItem, state: InboxState, reason: str) -> bool:
        """Mark a row handled or dropped, if this process still holds it."""
        if await self.store.inbox.mark(item.event_id, state, reason, owner=self.holder.owner):
            return True
        return await self._lost(item, "mark")

    async def _lost(self, item: InboxItem, step: str) -> bool:
        """Another process claimed the row after this one's lease ran out: write nothing."""
        CLAIM_LOST.labels(what=f"inbox_{step}").inc()
        log.warning("inbox.claim_lost", event_id=item.event_id, room_id=item.room_id, step=step)
        return False

    async def load_event(self, event_id: str) -> InboundEvent | None:
        """An admitted event, from the inbox."""
        row = await self.store.inbox.get(event_id)
        return None if row is None else _event_of(row.item)


def _gateway_notice(roster: Roster, event: InboundEvent) -> bool:
    """A notice the gateway sent in an agent's room or chat as that agent (see voices)."""
    turn = event.content.get(TURN_KEY)
    marked = isinstance(turn, dict) and turn.get(GATEWAY_MARK) is True
    return marked and roster.is_ours(event.sender)


def _may_address(event: InboundEvent) -> bool:
    """Whether a message could mention anyone: a mention needs an ``@``, a pill or
    ``m.mentions`` (routing decides whom it really addresses)."""
    mentions = event.content.get("m.mentions")
    if isinstance(mentions, dict) and mentions.get("user_ids"):
        return True
    formatted = event.content.get("formatted_body")
    return "@" in event.body or (isinstance(formatted, str) and "matrix.to" in formatted)


def _inbox_item(event: InboundEvent) -> InboxItem:
    return InboxItem(
        event_id=event.event_id,
        room_id=event.room_id,
        sender=event.sender,
        event_type=event.type,
        event_json=event.to_json(),
        origin_ts=event.origin_ts,
        received_by=event.received_by,
    )


def _event_of(item: InboxItem) -> InboundEvent | None:
    try:
        raw = json.loads(item.event_json)
    except ValueError:
        return None
    return parse_event(raw, item.room_id, UserId(item.received_by))
