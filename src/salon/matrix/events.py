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


def parse_sync(data: Mapping[str, Any], me: UserId) -> tuple[list[InboundEvent], list[Invite]]:
    """Timeline events of joined rooms and invitations for ``me`` from one /sync response."""
    events: list[InboundEvent] = []
    invites: list[Invite] = []
    rooms = data.get("rooms") if isinstance(data.get("rooms"), dict) else {}
    assert isinstance(rooms, dict)
    for room_id, room in (rooms.get("join") or {}).items():
        timeline = room.get("timeline") if isinstance(room, dict) else None
        for raw in (timeline or {}).get("events") or []:
            event = parse_event(raw, room_id, me)
            if event is not None:
                events.append(event)
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
    return events, invites


def _drop(reason: str, room_id: str, event_id: str | None = None) -> InboundEvent | None:
    EVENTS_DROPPED.labels(reason=reason).inc()
    log.warning("event.dropped", reason=reason, room_id=room_id, event_id=event_id)
    return None
