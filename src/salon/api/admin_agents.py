"""Admin routes: ``GET /api/v1/agents``, ``GET /api/v1/agents/{agent_id}`` and
``POST /api/v1/agents/spawn`` (a temporary session agent).

The roster with each agent's heartbeat status, read now (what `salon who` shows).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from salon._exceptions import MatrixError, SalonError
from salon.api.admin_lookups import member_or_404
from salon.api.bodies import JSON, invalid, json_body, seconds_field, text_field
from salon.api.context import ApiContext
from salon.api.server import CONTEXT
from salon.coordination.heartbeat import AGENT_STATE, effective_status, parse_state
from salon.ids import RoomAlias, RoomId
from salon.roster import Member

# The longest a session agent may live or idle: a year (its end is stored in ms).
MAX_SESSION_S = 366 * 86400.0


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
        reader = await ctx.api_in(room_id)
        content = await reader.get_state_event(RoomId(room_id), AGENT_STATE, member.user_id)
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


async def spawn_agent(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/spawn``: ``{from, ttl_s, idle_s?, name?}`` → 201 ``{id}``."""
    ctx = request.app[CONTEXT]
    body = await json_body(request, {"from", "ttl_s", "idle_s", "name"})
    template = text_field(body, "from")
    member_or_404(ctx, template)
    ttl_s = seconds_field(body, "ttl_s", required=True, maximum=MAX_SESSION_S)
    idle_s = seconds_field(body, "idle_s", required=False, maximum=MAX_SESSION_S)
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid("name: a string")
    if ctx.spawn is None:
        raise invalid("this gateway cannot start session agents")
    assert ttl_s is not None
    try:
        agent_id = await ctx.spawn(template, ttl_s, idle_s, name)
    except SalonError as e:
        raise invalid(str(e)) from None
    member = member_or_404(ctx, agent_id)
    return web.json_response(await agent_view(ctx, member), status=201)
