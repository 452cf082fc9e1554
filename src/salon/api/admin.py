"""Routes: the admin API under ``/api/v1/`` (what the `salon` CLI does, over HTTP).

- ``GET agents``, ``GET agents/{agent_id}``: the roster with each agent's heartbeat
  status (:mod:`salon.api.admin_agents`);
- ``POST messages``: post as the operator into an agent's room or the lobby; with
  ``wait``, the reply (the message's ledgered turns, each read back in its newest
  version) (:mod:`salon.api.admin_messages`);
- ``GET rooms/{room}/messages``: a room's newest messages (edits applied, none
  counted) (:mod:`salon.api.admin_rooms`);
- ``POST delegations``: one agent delegates to another; the outcome
  (:mod:`salon.api.admin_delegations`);
- ``GET status``: open delegations, turns in flight, loops, store and homeserver
  (:mod:`salon.api.admin_status`);
- ``GET approvals``, ``POST approvals/{id}/approve|deny``: tool calls waiting for a
  person's OK (:mod:`salon.api.admin_approvals`);
- ``GET openapi.json``: the OpenAPI document of every route (:mod:`salon.api.openapi`).

Requests are validated as they are read (:mod:`salon.api.bodies`: ``invalid_request``
names the field); Matrix failures become catalogue errors (``homeserver_unavailable``,
``room_not_found``…, :mod:`salon.api.admin_lookups`).
"""

from __future__ import annotations

from aiohttp import web

from salon.api.admin_agents import get_agent, list_agents, spawn_agent
from salon.api.admin_approvals import approve_approval, deny_approval, list_approvals
from salon.api.admin_delegations import post_delegation
from salon.api.admin_messages import post_message
from salon.api.admin_rooms import room_messages
from salon.api.admin_status import status
from salon.api.openapi import document

PREFIX = "/api/v1"


async def openapi(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json``."""
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    """Add the admin routes to ``app``."""
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/agents", list_agents)
    app.router.add_get(f"{PREFIX}/agents/{{agent_id}}", get_agent)
    app.router.add_post(f"{PREFIX}/agents/spawn", spawn_agent)
    app.router.add_post(f"{PREFIX}/messages", post_message)
    app.router.add_get(f"{PREFIX}/rooms/{{room}}/messages", room_messages)
    app.router.add_post(f"{PREFIX}/delegations", post_delegation)
    app.router.add_get(f"{PREFIX}/status", status)
    app.router.add_get(f"{PREFIX}/approvals", list_approvals)
    app.router.add_post(f"{PREFIX}/approvals/{{approval_id}}/approve", approve_approval)
    app.router.add_post(f"{PREFIX}/approvals/{{approval_id}}/deny", deny_approval)
