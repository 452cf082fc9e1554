"""Admin route: ``POST /api/v1/messages``, posting as the operator (`salon send --to`).

The message goes into an agent's room or the lobby; with ``wait``, the answer is the
reply: the message's ledgered turns, each read back in its newest version.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from aiohttp import web

from salon._exceptions import ForbiddenError, NotFoundError
from salon.api.admin_lookups import LOBBY, hosted_or_404, matrix_errors
from salon.api.admin_rooms import events_back
from salon.api.bodies import JSON, bool_field, json_body, text_field, timeout_field
from salon.api.context import ApiContext
from salon.api.server import CONTEXT, ApiError
from salon.ids import RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.membership import join_or_be_invited
from salon.store.records import InboxState, TurnRecord
from salon.turns.spec import Outcome

DEFAULT_SEND_TIMEOUT_S = 120.0
TXN_PREFIX = "salon-api"


# --- sending as the operator --------------------------------------------------------------


async def _bring_operator(ctx: ApiContext, operator: MatrixAPI, room_id: RoomId) -> None:
    """Join the operator to ``room_id``, having us invite it if it must."""
    inviter = await ctx.api_in(room_id)
    await join_or_be_invited(operator, room_id, inviter, [ctx.roster.server_name])


async def send_as_operator(ctx: ApiContext, room_id: RoomId, text: str) -> str:
    """Post ``text`` into ``room_id`` as the operator; its event id."""
    operator = ctx.operator
    if operator is None:
        raise ApiError("no_operator")
    content = {"msgtype": "m.text", "body": text}
    txn = f"{TXN_PREFIX}.{uuid.uuid4().hex}"
    with matrix_errors(room_id):
        try:
            return str(await operator.send_event(room_id, "m.room.message", content, txn_id=txn))
        except ForbiddenError:
            try:
                await _bring_operator(ctx, operator, room_id)
            except (ForbiddenError, NotFoundError) as e:
                raise ApiError(
                    "operator_not_in_room", user=operator.user_id, room=room_id, detail=str(e)
                ) from e
            return str(await operator.send_event(room_id, "m.room.message", content, txn_id=txn))


# --- waiting for the reply ----------------------------------------------------------------


async def _closed_turns(ctx: ApiContext, event_id: str) -> tuple[str, list[TurnRecord]] | None:
    """Once every turn owed for ``event_id`` has closed: the routing reason and the turns
    (none for a command or a dropped message). None while something is still open."""
    decision = await ctx.store.decisions.get(event_id)
    if decision is None:
        row = await ctx.store.inbox.get(event_id)
        if row is not None and row.state is not InboxState.NEW:
            return ("not routed" if row.state is InboxState.DONE else "dropped"), []
        return None
    records = []
    for agent_id in decision.agents:
        member = ctx.roster.get(agent_id)
        if member is None or not member.hosted:
            continue
        record = await ctx.store.turns.get(event_id, agent_id)
        if record is None or record.open:
            return None
        records.append(record)
    return decision.reason, records


async def wait_for_turns(
    ctx: ApiContext, event_id: str, timeout_s: float
) -> tuple[str, list[TurnRecord]]:
    """Poll the ledger until the message's turns have closed (504 ``timeout`` after)."""
    deadline = time.monotonic() + timeout_s
    pause = 0.02
    while True:
        done = await _closed_turns(ctx, event_id)
        if done is not None:
            return done
        left = deadline - time.monotonic()
        if left <= 0:
            raise ApiError("timeout", seconds=f"{timeout_s:g}")
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)


async def newest_version(
    api: MatrixAPI, room_id: RoomId, event_id: str, author: str
) -> JSON | None:
    """The content a client shows for ``event_id``: its author's newest edit, or itself.

    Pages back from the room's end (newest first, so the first edit met is the newest)
    until the event itself is found; None if it is not within ``READ_SCAN_LIMIT`` events.
    """
    newest_edit: JSON | None = None
    async for event in events_back(api, room_id, 100):
        content = event.get("content") or {}
        if event.get("event_id") == event_id:
            return newest_edit or content
        rel = content.get("m.relates_to") or {}
        new = content.get("m.new_content")
        if (
            newest_edit is None
            and rel.get("rel_type") == "m.replace"
            and rel.get("event_id") == event_id
            and event.get("sender") == author
            and isinstance(new, dict)
        ):
            newest_edit = new
    return None


async def reply_view(ctx: ApiContext, record: TurnRecord) -> JSON:
    """One agent's reply to the message: its state and the reply's newest text."""
    view: JSON = {
        "agent": record.agent_id,
        "state": record.state.value,
        "event_id": record.reply_event_id,
        "text": None,
        "notice": False,
        "error": record.error,
    }
    content: JSON | None = None
    if record.reply_event_id:
        member = ctx.roster.get(record.agent_id)
        author = str(member.user_id) if member is not None else ""
        with matrix_errors(record.room_id):
            content = await newest_version(
                await ctx.api_in(record.room_id),
                RoomId(record.room_id),
                record.reply_event_id,
                author,
            )
    if content is not None:
        view["text"] = str(content.get("body", ""))
        view["notice"] = content.get("msgtype") == "m.notice"
    elif record.output:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            outcome = Outcome.from_json(record.output)
            view["text"] = outcome.text
    return view


# --- the route ----------------------------------------------------------------------------


async def post_message(request: web.Request) -> web.Response:
    """``POST /api/v1/messages``: ``{to, text, wait?, timeout_s?}``."""
    ctx = request.app[CONTEXT]
    body = await json_body(request, {"to", "text", "wait", "timeout_s"})
    to = text_field(body, "to")
    text = text_field(body, "text")
    wait = bool_field(body, "wait", False)
    timeout_s = timeout_field(body, DEFAULT_SEND_TIMEOUT_S)
    if to == LOBBY:
        room_id = RoomId(ctx.lobby_id)
    else:
        hosted_or_404(ctx, to)
        room_id = RoomId(ctx.agent_rooms[to])
    if ctx.operator is None:
        raise ApiError("no_operator")
    event_id = await send_as_operator(ctx, room_id, text)
    answer: JSON = {"event_id": event_id, "room_id": room_id, "to": to}
    if not wait:
        return web.json_response(answer, status=202)
    reason, records = await wait_for_turns(ctx, event_id, timeout_s)
    replies = [await reply_view(ctx, r) for r in records]
    answer.update(routed=reason, replies=replies, reply=replies[0] if replies else None)
    return web.json_response(answer)
