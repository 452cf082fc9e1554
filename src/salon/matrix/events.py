"""Typed inbound events, parsed (and validated) from the homeserver's JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from salon.ids import EventId, RoomId, UserId
from salon.metrics import EVENTS_DROPPED

log = structlog.get_logger("salon.matrix.events")


@dataclass(frozen=True)
class InboundEvent:
    """One timeline event as received by one identity."""

    event_id: EventId
    room_id: RoomId
    sender: UserId
    type: str
    content: Mapping[str, Any]
    origin_ts: int
    received_by: UserId
    state_key: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def body(self) -> str:
        """The text body of a message ("" if none)."""
        body = self.content.get("body")
        return body if isinstance(body, str) else ""

    @property
    def relation(self) -> Mapping[str, Any]:
        """``m.relates_to`` (empty if absent or malformed)."""
        rel = self.content.get("m.relates_to")
        return rel if isinstance(rel, dict) else {}

    @property
    def replaces(self) -> str | None:
        """The event this one edits, if it is an ``m.replace``."""
        rel = self.relation
        return rel.get("event_id") if rel.get("rel_type") == "m.replace" else None

    @property
    def thread_root(self) -> str | None:
        """The thread this event belongs to, if any."""
        rel = self.relation
        return rel.get("event_id") if rel.get("rel_type") == "m.thread" else None

    def to_json(self) -> str:
        """The raw event, for the durable inbox."""
        return json.dumps(dict(self.raw) or {"event_id": self.event_id}, ensure_ascii=False)


@dataclass(frozen=True)
class Invite:
    """An invitation of ``invited`` into ``room_id`` by ``sender``."""

    room_id: RoomId
    sender: UserId
    invited: UserId


def parse_event(raw: object, room_id: str, received_by: UserId) -> InboundEvent | None:
    """Validate one timeline event; a malformed one is dropped with a log line and a metric."""
    if not isinstance(raw, dict):
        return _drop("not_an_object", room_id)
    event_id, sender, etype = raw.get("event_id"), raw.get("sender"), raw.get("type")
    content, ts = raw.get("content"), raw.get("origin_server_ts")
    if not (isinstance(event_id, str) and event_id.startswith("$")):
        return _drop("bad_event_id", room_id)
    if not (isinstance(sender, str) and sender.startswith("@") and ":" in sender):
        return _drop("bad_sender", room_id, event_id)
    if not isinstance(etype, str) or not etype:
        return _drop("bad_type", room_id, event_id)
    if not isinstance(content, dict):
        return _drop("bad_content", room_id, event_id)
    if not isinstance(ts, int) or isinstance(ts, bool):
        return _drop("bad_timestamp", room_id, event_id)
    state_key = raw.get("state_key")
    return InboundEvent(
        event_id=EventId(event_id),
        room_id=RoomId(room_id),
        sender=UserId(sender),
        type=etype,
        content=content,
        origin_ts=ts,
        received_by=received_by,
        state_key=state_key if isinstance(state_key, str) else None,
        raw={**raw, "room_id": room_id},
    )


@dataclass(frozen=True)
class RoomTimeline:
    """One joined room's part of a /sync response."""

    room_id: RoomId
    events: list[InboundEvent]  # oldest first
    own_members: list[InboundEvent]  # this identity's m.room.member events from the state block
    limited: bool = False  # events between the last sync and these were left out
    prev_batch: str | None = None  # where /messages continues backwards


@dataclass(frozen=True)
class SyncBatch:
    """What one /sync response holds for one identity."""

    rooms: list[RoomTimeline]
    invites: list[Invite]
    next_batch: str | None


def own_join_ts(event: InboundEvent, me: UserId) -> int | None:
    """When ``me`` joined, if ``event`` is its own join (a profile change is not a join)."""
    if event.type != "m.room.member" or event.state_key != me or event.sender != me:
        return None
    if event.content.get("membership") != "join":
        return None
    unsigned = event.raw.get("unsigned")
    prev = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
    if isinstance(prev, dict) and prev.get("membership") == "join":
        return None
    return event.origin_ts


def parse_sync_batch(data: Mapping[str, Any], me: UserId) -> SyncBatch:
    """Joined rooms' timelines and invitations for ``me`` from one /sync response."""
    rooms = data.get("rooms") if isinstance(data.get("rooms"), dict) else {}
    assert isinstance(rooms, dict)
    timelines: list[RoomTimeline] = []
    for room_id, room in (rooms.get("join") or {}).items():
        room = room if isinstance(room, dict) else {}
        timeline = room.get("timeline") if isinstance(room.get("timeline"), dict) else {}
        assert isinstance(timeline, dict)
        events = [parse_event(raw, room_id, me) for raw in timeline.get("events") or []]
        state = (room.get("state") or {}).get("events") or []
        own = [
            parse_event(raw, room_id, me)
            for raw in state
            if isinstance(raw, dict)
            and raw.get("type") == "m.room.member"
            and raw.get("state_key") == me
        ]
        prev_batch = timeline.get("prev_batch")
        timelines.append(
            RoomTimeline(
                room_id=RoomId(room_id),
                events=[e for e in events if e is not None],
                own_members=[e for e in own if e is not None],
                limited=timeline.get("limited") is True,
                prev_batch=prev_batch if isinstance(prev_batch, str) else None,
            )
        )
    invites: list[Invite] = []
    for room_id, room in (rooms.get("invite") or {}).items():
        state = ((room or {}).get("invite_state") or {}).get("events") or []
        for raw in state:
            if (
                isinstance(raw, dict)
                and raw.get("type") == "m.room.member"
                and raw.get("state_key") == me
                and (raw.get("content") or {}).get("membership") == "invite"
                and isinstance(raw.get("sender"), str)
            ):
                invites.append(Invite(RoomId(room_id), UserId(raw["sender"]), me))
    next_batch = data.get("next_batch")
    return SyncBatch(timelines, invites, next_batch if isinstance(next_batch, str) else None)


def parse_sync(data: Mapping[str, Any], me: UserId) -> tuple[list[InboundEvent], list[Invite]]:
    """Timeline events of joined rooms and invitations for ``me`` from one /sync response."""
    batch = parse_sync_batch(data, me)
    return [e for room in batch.rooms for e in room.events], batch.invites


def _drop(reason: str, room_id: str, event_id: str | None = None) -> InboundEvent | None:
    EVENTS_DROPPED.labels(reason=reason).inc()
    log.warning("event.dropped", reason=reason, room_id=room_id, event_id=event_id)
    return None
