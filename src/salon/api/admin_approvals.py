"""Admin routes: approval requests (the dashboard's and `curl`'s way to answer them).

- ``GET /api/v1/approvals?state=pending&limit=100``: newest first;
- ``POST /api/v1/approvals/{id}/approve`` and ``…/deny``: decide one, as an admin
  (the API token is an admin's); the answer is the row as decided.
"""

from __future__ import annotations

from aiohttp import web

from salon.api.bodies import invalid
from salon.api.server import CONTEXT, ApiError
from salon.store.approvals import ApprovalState


async def list_approvals(request: web.Request) -> web.Response:
    """``GET /api/v1/approvals``."""
    ctx = request.app[CONTEXT]
    state_arg = request.query.get("state")
    try:
        state = ApprovalState(state_arg) if state_arg else None
    except ValueError:
        known = ", ".join(s.value for s in ApprovalState)
        raise invalid(f"state: one of {known}") from None
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise invalid("limit: a whole number") from None
    if not 1 <= limit <= 1000:
        raise invalid("limit: between 1 and 1000")
    records = await ctx.store.approvals.list(state=state, limit=limit)
    return web.json_response({"approvals": [r.to_json() for r in records]})


async def _decide(request: web.Request, *, approve: bool) -> web.Response:
    ctx = request.app[CONTEXT]
    if ctx.approvals is None:
        raise ApiError("approvals_off")
    aid = request.match_info["approval_id"]
    code, record = await ctx.approvals.decide(aid, approve=approve, by="api", via="api")
    if record is None:
        raise ApiError("approval_not_found", id=aid[:40])
    if code == "decided":
        raise ApiError("approval_decided", id=aid, state=record.state.value)
    return web.json_response(record.to_json())


async def approve_approval(request: web.Request) -> web.Response:
    """``POST /api/v1/approvals/{id}/approve``: run the call."""
    return await _decide(request, approve=True)


async def deny_approval(request: web.Request) -> web.Response:
    """``POST /api/v1/approvals/{id}/deny``: refuse it."""
    return await _decide(request, approve=False)
