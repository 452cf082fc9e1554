"""Reading a delegation's status events back from its target room's timeline
(what landed while the delegating gateway was down)."""

from __future__ import annotations

from salon.coordination.protocol import STATUS
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.store.delegations import DelegationRecord


async def statuses_of(api: MatrixAPI, record: DelegationRecord, pages: int) -> list[InboundEvent]:
    """Status events for ``record`` in its target room, oldest first (newest pages read)."""
    found: list[InboundEvent] = []
    since: str | None = None
    for _ in range(pages):
        page = await api.messages(RoomId(record.target_room), limit=100, since=since)
        for raw in page.get("chunk") or []:
            content = raw.get("content") or {}
            if raw.get("type") == STATUS and content.get("id") == record.id:
                found.append(
                    InboundEvent(
                        event_id=raw["event_id"],
                        room_id=RoomId(record.target_room),
                        sender=UserId(raw["sender"]),
                        type=STATUS,
                        content=content,
                        origin_ts=int(raw.get("origin_server_ts") or 0),
                        received_by=api.user_id,
                    )
                )
            if raw.get("event_id") == record.request_event_id:
                return list(reversed(found))
        since = page.get("end")
        if not since:
            break
    return list(reversed(found))
