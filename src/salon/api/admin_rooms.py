"""Admin route: ``GET /api/v1/rooms/{room}/messages``, a room's newest messages.

Also the paging back through a room's timeline that reading a reply uses
(:mod:`salon.api.admin_messages`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from salon.api.admin_lookups import matrix_errors, resolve_room
from salon.api.bodies import JSON, invalid
from salon.api.server import CONTEXT
from salon.ids import RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import DeviceCrypto

MAX_READ_LIMIT = 200
READ_SCAN_LIMIT = 2000  # events looked at for one read or one reply lookup, at most


async def events_back(api: MatrixAPI, room_id: RoomId, page_size: int) -> AsyncIterator[JSON]:
    """The room's events, newest first, a page of ``page_size`` at a time.

    Stops at the room's start, or before a page once ``READ_SCAN_LIMIT`` events have
    been looked at; no page is fetched that the caller does not go on to.
    """
    token: str | None = None
    scanned = 0
    while scanned < READ_SCAN_LIMIT:
        page = await api.messages(room_id, limit=page_size, since=token)
        chunk = page.get("chunk") or []
        for event in chunk:
            scanned += 1
            if event.get("type") == "m.room.encrypted" and isinstance(api.crypto, DeviceCrypto):
                # Read back in clear with the keys the reading identity holds.
                event = await api.crypto.open_past(event, room_id) or event
            yield event
        end = page.get("end")
        if not chunk or not end or end == token:
            break
        token = str(end)


async def read_messages(api: MatrixAPI, room_id: RoomId, limit: int) -> list[JSON]:
    """The newest ``limit`` messages, oldest first, each in its newest (edited) version.

    Edits, reactions, redacted messages and state events take no place in the count.
    """
    edits: dict[tuple[str, str], JSON] = {}  # (edited event, editor) → newest new content
    found: list[JSON] = []
    async for event in events_back(api, room_id, min(1000, max(50, limit * 2))):
        if event.get("type") != "m.room.message" or event.get("state_key") is not None:
            continue
        content = event.get("content") or {}
        rel = content.get("m.relates_to") or {}
        if rel.get("rel_type") == "m.replace":
            new = content.get("m.new_content")
            if isinstance(new, dict):  # newest first: the first edit met is the newest
                edits.setdefault((str(rel.get("event_id")), str(event.get("sender"))), new)
            continue
        if "body" not in content:
            continue  # redacted
        found.append(event)
        if len(found) == limit:
            break
    result = []
    for event in reversed(found):
        content = event.get("content") or {}
        # Only its author's edits count (anyone may send an m.replace).
        edit = edits.get((str(event.get("event_id")), str(event.get("sender"))))
        if edit is not None:
            content = edit
        result.append(
            {
                "event_id": event.get("event_id"),
                "sender": event.get("sender"),
                "ts": int(event.get("origin_server_ts") or 0),
                "body": str(content.get("body", "")),
                "notice": content.get("msgtype") == "m.notice",
                "edited": edit is not None,
            }
        )
    return result


async def room_messages(request: web.Request) -> web.Response:
    """``GET /api/v1/rooms/{room}/messages?limit=N``."""
    ctx = request.app[CONTEXT]
    ref = request.match_info["room"]
    raw = request.query.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise invalid("limit: must be a whole number") from None
    if not 1 <= limit <= MAX_READ_LIMIT:
        raise invalid(f"limit: must be from 1 to {MAX_READ_LIMIT}")
    room_id = await resolve_room(ctx, ref)
    with matrix_errors(ref):
        messages = await read_messages(await ctx.api_in(room_id), room_id, limit)
    for message in messages:
        message["agent"] = ctx.roster.agent_of(str(message["sender"]))
    return web.json_response({"room_id": room_id, "messages": messages})
