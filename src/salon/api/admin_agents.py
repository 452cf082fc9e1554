"""Admin routes: ``GET /api/v1/agents`` and ``GET /api/v1/agents/{agent_id}``.

The roster with each agent's heartbeat status, read now (what `salon who` shows).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from salon._exceptions import MatrixError
from salon.api.admin_lookups import member_or_404
from salon.api.bodies import JSON
from salon.api.context import ApiContext
from salon.api.server import CONTEXT
from salon.coordination.heartbeat import AGENT_STATE, effective_status, parse_state
from salon.ids import RoomAlias, RoomId
from salon.roster import Member


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
