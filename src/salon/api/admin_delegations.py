"""Admin route: ``POST /api/v1/delegations``, one agent delegating to another (`salon delegate`).

The answer is the delegation's outcome (with ``wait``) or, without, its id.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from salon.api.admin_lookups import hosted_or_404, member_or_404
from salon.api.bodies import bool_field, invalid, json_body, text_field, timeout_field
from salon.api.context import ApiContext
from salon.api.server import CONTEXT, ApiError
from salon.store.records import now_ms


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
        raise invalid("context: must be a string")
    wait = bool_field(body, "wait", True)
    timeout_s = timeout_field(body, ctx.delegations.deadline_s + 10)
    hosted_or_404(ctx, from_agent)
    if to_agent not in getattr(ctx.delegations, "remotes", {}):  # a remote A2A agent is none
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
    if wait:
        delegation_id = await _delegation_id(ctx, from_agent, to_agent, task, since)
    else:  # without wait, the outcome's text is the new delegation's id
        delegation_id = outcome.text if outcome.ok else None
    return web.json_response({"ok": outcome.ok, "text": outcome.text, "id": delegation_id})
