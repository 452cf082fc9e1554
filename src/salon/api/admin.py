"""Routes: the admin API under ``/api/v1/`` (what the `salon` CLI does, over HTTP).

- ``GET agents``, ``GET agents/{agent_id}``: the roster with each agent's heartbeat status;
- ``POST messages``: post as the operator into an agent's room or the lobby; with
  ``wait``, the reply (the message's ledgered turns, each read back in its newest version);
- ``GET rooms/{room}/messages``: a room's newest messages (edits applied, none counted);
- ``POST delegations``: one agent delegates to another; the outcome;
- ``GET status``: open delegations, turns in flight, loops, store and homeserver;
- ``GET openapi.json``: the OpenAPI document of every route (:mod:`salon.api.openapi`).

Requests are validated here (``invalid_request`` names the field); Matrix failures
become catalogue errors (``homeserver_unavailable``, ``room_not_found``…).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from salon._exceptions import (
    ForbiddenError,
    MatrixConnectionError,
    MatrixError,
    NotFoundError,
)
from salon.api.context import ApiContext
from salon.api.health import (
    check_homeserver,
    check_loops,
    check_store,
    loop_view,
    open_by_id,
)
from salon.api.openapi import document
from salon.api.server import CONTEXT, ApiError
from salon.coordination.heartbeat import AGENT_STATE, effective_status, parse_state
from salon.gateway.turnspec import Outcome
from salon.ids import RoomAlias, RoomId
from salon.matrix.api import MatrixAPI
from salon.roster import Member
from salon.store.records import InboxState, TurnRecord, now_ms

PREFIX = "/api/v1"
LOBBY = "lobby"
MAX_TIMEOUT_S = 3600.0
DEFAULT_SEND_TIMEOUT_S = 120.0
MAX_READ_LIMIT = 200
READ_SCAN_LIMIT = 2000  # events looked at for one read or one reply lookup, at most
TXN_PREFIX = "salon-api"

JSON = dict[str, Any]


# --- request bodies -------------------------------------------------------------------


async def json_body(request: web.Request, fields: set[str]) -> JSON:
    """The body as a JSON object with only ``fields`` (400 naming the culprit otherwise)."""
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid_request", detail="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_request", detail="the body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise ApiError("invalid_request", detail=f"{unknown[0]}: unknown field")
    return body


def text_field(body: JSON, name: str) -> str:
    """A required non-blank string."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError("invalid_request", detail=f"{name}: a non-empty string is required")
    return value


def bool_field(body: JSON, name: str, default: bool) -> bool:
    """An optional boolean."""
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError("invalid_request", detail=f"{name}: must be true or false")
    return value


def timeout_field(body: JSON, default: float) -> float:
    """``timeout_s``: seconds, more than 0 and at most an hour."""
    value = body.get("timeout_s", default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError("invalid_request", detail="timeout_s: must be a number of seconds")
    if not 0 < value <= MAX_TIMEOUT_S:
        raise ApiError(
            "invalid_request",
            detail=f"timeout_s: must be more than 0 and at most {MAX_TIMEOUT_S:g}",
        )
    return float(value)


# --- Matrix errors ------------------------------------------------------------------------


@contextlib.contextmanager
def matrix_errors(room: str) -> Iterator[None]:
    """Map Matrix failures while working on ``room`` to catalogue errors."""
    try:
        yield
    except MatrixConnectionError as e:
        raise ApiError("homeserver_unavailable", detail=str(e)) from e
    except NotFoundError:
        raise ApiError("room_not_found", room=room) from None
    except ForbiddenError as e:
        raise ApiError("room_forbidden", room=room, detail=str(e)) from e
    except MatrixError as e:
        raise ApiError("matrix_error", detail=str(e)) from e


def _known(ctx: ApiContext, *extra: str) -> str:
    return ", ".join([*(m.agent_id for m in ctx.roster), *extra]) or "none"


def member_or_404(ctx: ApiContext, agent_id: str) -> Member:
    """The roster member ``agent_id`` (404 ``agent_not_found`` naming the known ones)."""
    member = ctx.roster.get(agent_id)
    if member is None:
        raise ApiError("agent_not_found", agent=agent_id, known=_known(ctx))
    return member


def hosted_or_404(ctx: ApiContext, agent_id: str) -> Member:
    """An agent this gateway runs (a peer's agent is not one)."""
    member = ctx.roster.get(agent_id)
    if member is None or not member.hosted or agent_id not in ctx.agent_rooms:
        known = ", ".join(a for a in ctx.agent_rooms) or "none"
        raise ApiError("agent_not_found", agent=agent_id, known=known)
    return member


async def resolve_room(ctx: ApiContext, ref: str) -> RoomId:
    """A room from ``lobby``, an agent id, a room alias or a room id."""
    if ref == LOBBY:
        return RoomId(ctx.lobby_id)
    if ref in ctx.agent_rooms:
        return RoomId(ctx.agent_rooms[ref])
    member = ctx.roster.get(ref)
    alias = member.room_alias if member is not None else ref
    if alias.startswith("#"):
        with matrix_errors(ref):
            room_id, _ = await ctx.router_api.resolve_alias(RoomAlias(alias))
        return room_id
    if ref.startswith("!"):
        return RoomId(ref)
    raise ApiError("room_not_found", room=ref)


# --- agents -------------------------------------------------------------------------------


async def agent_view(ctx: ApiContext, member: Member) -> JSON:
    """What `salon who` shows of one agent, its heartbeat read now."""
    view: JSON = {
        "id": member.agent_id,
        "kind": member.kind,
        "label": member.label,
        "description": member.description,
        "user_id": member.user_id,
        "room_alias": member.room_alias,
        "room_id": ctx.agent_rooms.get(member.agent_id),
        "hosted": member.hosted,
        "status": "unknown",
        "last_beat_ms": None,
        "gateway": None,
        "status_error": None,
    }
    try:
        room_id = view["room_id"]
        if room_id is None and member.room_alias:
            room_id, _ = await ctx.router_api.resolve_alias(RoomAlias(member.room_alias))
            view["room_id"] = room_id
        if room_id is None:
            view["status_error"] = "no room"
            return view
        content = await ctx.router_api.get_state_event(RoomId(room_id), AGENT_STATE, member.user_id)
    except MatrixError as e:
        view["status_error"] = str(e)
        return view
    beat = parse_state(content)
    view["status"] = effective_status(beat).value
    if beat is not None:
        view["last_beat_ms"] = beat.heartbeat_ts
        view["gateway"] = beat.gateway or None
    return view


async def list_agents(request: web.Request) -> web.Response:
    """``GET /api/v1/agents``."""
    ctx = request.app[CONTEXT]
    views = await asyncio.gather(*(agent_view(ctx, m) for m in ctx.roster))
    return web.json_response({"agents": list(views)})


async def get_agent(request: web.Request) -> web.Response:
    """``GET /api/v1/agents/{agent_id}``."""
    ctx = request.app[CONTEXT]
    member = member_or_404(ctx, request.match_info["agent_id"])
    return web.json_response(await agent_view(ctx, member))


# --- sending as the operator --------------------------------------------------------------


async def _bring_operator(ctx: ApiContext, operator: MatrixAPI, room_id: RoomId) -> None:
    """Join the operator to ``room_id``, having the router invite it if it must."""
    via = [ctx.roster.server_name]
    try:
        await operator.join(room_id, via)
        return
    except ForbiddenError:
        pass
    await ctx.router_api.invite(room_id, operator.user_id)
    await operator.join(room_id, via)


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
    token: str | None = None
    scanned = 0
    while scanned < READ_SCAN_LIMIT:
        page = await api.messages(room_id, limit=100, since=token)
        chunk = page.get("chunk") or []
        for event in chunk:
            scanned += 1
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
        end = page.get("end")
        if not chunk or not end or end == token:
            break
        token = str(end)
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
                ctx.router_api, RoomId(record.room_id), record.reply_event_id, author
            )
    if content is not None:
        view["text"] = str(content.get("body", ""))
        view["notice"] = content.get("msgtype") == "m.notice"
    elif record.output:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            outcome = Outcome.from_json(record.output)
            view["text"] = outcome.text
    return view


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


# --- reading a room -----------------------------------------------------------------------


async def read_messages(api: MatrixAPI, room_id: RoomId, limit: int) -> list[JSON]:
    """The newest ``limit`` messages, oldest first, each in its newest (edited) version.

    Edits, reactions, redacted messages and state events take no place in the count.
    """
    edits: dict[tuple[str, str], JSON] = {}  # (edited event, editor) → newest new content
    found: list[JSON] = []
    token: str | None = None
    scanned = 0
    while len(found) < limit and scanned < READ_SCAN_LIMIT:
        page = await api.messages(room_id, limit=min(1000, max(50, limit * 2)), since=token)
        chunk = page.get("chunk") or []
        for event in chunk:
            scanned += 1
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
        end = page.get("end")
        if not chunk or not end or end == token:
            break
        token = str(end)
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
        raise ApiError("invalid_request", detail="limit: must be a whole number") from None
    if not 1 <= limit <= MAX_READ_LIMIT:
        raise ApiError("invalid_request", detail=f"limit: must be from 1 to {MAX_READ_LIMIT}")
    room_id = await resolve_room(ctx, ref)
    with matrix_errors(ref):
        messages = await read_messages(ctx.router_api, room_id, limit)
    for message in messages:
        message["agent"] = ctx.roster.agent_of(str(message["sender"]))
    return web.json_response({"room_id": room_id, "messages": messages})


# --- delegations --------------------------------------------------------------------------


async def _delegation_id(
    ctx: ApiContext, from_agent: str, to_agent: str, task: str, since_ms: int
) -> str | None:
    """The id of the delegation this request made (the newest matching one since)."""
    for record in await ctx.store.delegations.recent(50):
        if (
            record.from_agent == from_agent
            and record.to_agent == to_agent
            and record.task == task
            and record.origin_event is None
            and record.created_at >= since_ms
        ):
            return record.id
    return None


async def post_delegation(request: web.Request) -> web.Response:
    """``POST /api/v1/delegations``: ``{from, to, task, context?, wait?, timeout_s?}``."""
    ctx = request.app[CONTEXT]
    body = await json_body(request, {"from", "to", "task", "context", "wait", "timeout_s"})
    from_agent = text_field(body, "from")
    to_agent = text_field(body, "to")
    task = text_field(body, "task")
    context = body.get("context")
    if context is not None and not isinstance(context, str):
        raise ApiError("invalid_request", detail="context: must be a string")
    wait = bool_field(body, "wait", True)
    timeout_s = timeout_field(body, ctx.delegations.deadline_s + 10)
    hosted_or_404(ctx, from_agent)
    member_or_404(ctx, to_agent)
    since = now_ms() - 1
    # Shielded: a caller that stops waiting leaves the delegation running (its outcome
    # is then reported by the delegating agent in its room).
    call = asyncio.ensure_future(
        ctx.delegations.delegate(
            from_agent,
            to_agent,
            task,
            context=context,
            origin_room=ctx.agent_rooms[from_agent],
            origin_event=None,
            wait=wait,
        )
    )
    try:
        outcome = await asyncio.wait_for(asyncio.shield(call), timeout_s)
    except TimeoutError:
        raise ApiError("timeout", seconds=f"{timeout_s:g}") from None
    if not wait:
        delegation_id = outcome.text if outcome.ok else None
        return web.json_response({"ok": outcome.ok, "text": outcome.text, "id": delegation_id})
    delegation_id = await _delegation_id(ctx, from_agent, to_agent, task, since)
    return web.json_response({"ok": outcome.ok, "text": outcome.text, "id": delegation_id})


# --- status --------------------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    """``GET /api/v1/status``."""
    ctx = request.app[CONTEXT]
    now = now_ms()
    store_check, homeserver_check = await asyncio.gather(check_store(ctx), check_homeserver(ctx))
    delegations: list[JSON] = []
    turns: list[JSON] = []
    if store_check["ok"]:
        for record in open_by_id(await ctx.store.delegations.open()):
            delegations.append(
                {
                    "id": record.id,
                    "from": record.from_agent,
                    "to": record.to_agent,
                    "state": record.state.value,
                    "age_s": max(0, (now - record.created_at) // 1000),
                }
            )
    for event_id, agent_id in ctx.runner.in_flight():
        row: JSON = {"event_id": event_id, "agent": agent_id, "state": None, "attempts": None}
        if store_check["ok"]:
            turn = await ctx.store.turns.get(event_id, agent_id)
            if turn is not None:
                row.update(state=turn.state.value, attempts=turn.attempts)
        turns.append(row)
    loops = [loop_view(loop) for loop in ctx.loops()]
    return web.json_response(
        {
            "gateway": ctx.gateway,
            "delegations": delegations,
            "turns_in_flight": turns,
            "loops": loops,
            "loops_restarting": [loop["name"] for loop in loops if loop["backing_off"]],
            "loops_ok": check_loops(ctx)["ok"],
            "store": store_check,
            "homeserver": homeserver_check,
        }
    )


# --- the document -----------------------------------------------------------------------------


async def openapi(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json``."""
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    """Add this module's routes to ``app``."""
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/agents", list_agents)
    app.router.add_get(f"{PREFIX}/agents/{{agent_id}}", get_agent)
    app.router.add_post(f"{PREFIX}/messages", post_message)
    app.router.add_get(f"{PREFIX}/rooms/{{room}}/messages", room_messages)
    app.router.add_post(f"{PREFIX}/delegations", post_delegation)
    app.router.add_get(f"{PREFIX}/status", status)
