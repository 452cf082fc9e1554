"""Routes: the dashboard under ``/dashboard/`` and its data under ``/api/v1/dashboard/``.

- ``GET /dashboard/``: the page; ``GET /dashboard/static/{name}``: its script and
  style, shipped in the package (``salon/api/dashboard_static``, no CDN);
- ``GET /dashboard/login?code=…``: a one-time login link (:mod:`.dashboard_auth`);
  ``POST /api/v1/dashboard/login`` ``{token}``; ``POST /api/v1/dashboard/logout``;
- ``GET /api/v1/dashboard/session``: the CSRF token the page sends back on POSTs;
- ``GET /api/v1/dashboard/snapshot``: everything shown (:mod:`.dashboard_data`);
- ``GET /api/v1/dashboard/events``: server-sent events, a ``snapshot`` event at
  once and again whenever what is shown changes (checked each second); a comment
  line every 15 s keeps proxies from closing it. EventSource reconnects by itself
  after a gateway restart and gets a fresh snapshot first;
- ``POST /api/v1/dashboard/reload``: reload the config now (what the reload did);
- ``POST /api/v1/dashboard/approvals/{id}/approve`` and ``…/deny``: the admin API's
  (:mod:`salon.api.admin_approvals`), reachable with the session: the same effect
  and the same record.

The page's responses carry a strict Content-Security-Policy: only its own script
and style run, and every text from Matrix is put in with ``textContent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib.resources import files

from aiohttp import web

from salon.api.admin_approvals import approve_approval, deny_approval
from salon.api.bodies import json_body, text_field
from salon.api.dashboard_auth import COOKIE, SESSION, DashboardAuth, set_cookie
from salon.api.dashboard_data import Snapshots
from salon.api.server import CONTEXT, ApiError, json_error

AUTH: web.AppKey[DashboardAuth] = web.AppKey("salon_dashboard_auth", DashboardAuth)
SNAPSHOTS: web.AppKey[Snapshots] = web.AppKey("salon_dashboard_snapshots", Snapshots)
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("salon_dashboard_stopping", asyncio.Event)
PREFIX = "/api/v1/dashboard"
ASSETS = {
    "dashboard.js": "text/javascript",
    "approvals.js": "text/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TICK_S = 1.0
KEEPALIVE_S = 15.0


def _asset(name: str) -> bytes:
    return (files("salon.api") / "dashboard_static" / name).read_bytes()


async def page(request: web.Request) -> web.Response:
    """``GET /dashboard/``: the page (no data in it; it fetches the snapshot)."""
    if request.path == "/dashboard":
        raise web.HTTPFound("/dashboard/")
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
    return web.Response(body=_asset("index.html"), content_type="text/html", headers=headers)


async def asset(request: web.Request) -> web.Response:
    """``GET /dashboard/static/{name}``."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return web.Response(body=_asset(name), content_type=ASSETS[name], headers=headers)


async def login_link(request: web.Request) -> web.Response:
    """``GET /dashboard/login?code=…``: a spent or unknown code leads to the form."""
    sid = request.app[AUTH].redeem(request.query.get("code", ""))
    if sid is None:
        raise web.HTTPSeeOther("/dashboard/#link-used", headers=SECURITY_HEADERS)
    response = web.HTTPSeeOther("/dashboard/", headers=SECURITY_HEADERS)
    set_cookie(response, sid)
    raise response


async def login(request: web.Request) -> web.Response:
    """``POST /api/v1/dashboard/login`` ``{token}``: the API token opens a session."""
    body = await json_body(request, {"token"})
    sid = request.app[AUTH].login_with_token(text_field(body, "token"))
    if sid is None:
        return json_error("login_failed")
    response = web.json_response({"ok": True})
    set_cookie(response, sid)
    return response


async def logout(request: web.Request) -> web.Response:
    """``POST /api/v1/dashboard/logout``."""
    request.app[AUTH].close(request)
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def session(request: web.Request) -> web.Response:
    """``GET /api/v1/dashboard/session``: the CSRF token (null with a bearer token)."""
    found = request.get(SESSION)
    ctx = request.app[CONTEXT]
    return web.json_response(
        {"csrf": found.csrf if found is not None else None, "gateway": ctx.gateway}
    )


async def snapshot(request: web.Request) -> web.Response:
    """``GET /api/v1/dashboard/snapshot``."""
    return web.json_response(await request.app[SNAPSHOTS].get())


def _comparable(body: dict[str, object]) -> str:
    return json.dumps({k: v for k, v in body.items() if k != "now_ms"}, sort_keys=True)


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/dashboard/events``: server-sent ``snapshot`` events."""
    if "text/event-stream" not in request.headers.get("Accept", ""):
        raise ApiError("not_acceptable")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    stopping = request.app[STOPPING]
    snapshots = request.app[SNAPSHOTS]
    last, quiet = "", 0.0
    # A page closed, or the server stopping, ends the stream.
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write(b"retry: 2000\n\n")
        while not stopping.is_set():
            body = await snapshots.get()
            seen = _comparable(body)
            if seen != last:
                last, quiet = seen, 0.0
                data = json.dumps(body, separators=(",", ":"))
                await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
            elif quiet >= KEEPALIVE_S:
                quiet = 0.0
                await response.write(b": keep-alive\n\n")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), TICK_S)
            quiet += TICK_S
    return response


async def reload(request: web.Request) -> web.Response:
    """``POST /api/v1/dashboard/reload``: reload the config now."""
    ctx = request.app[CONTEXT]
    if ctx.reload is None:
        raise ApiError("invalid_request", detail="this gateway cannot reload its config")
    return web.json_response(await ctx.reload())


async def _stop_streams(app: web.Application) -> None:
    app[STOPPING].set()  # open streams end, so stopping the server waits for none


def add_routes(app: web.Application) -> None:
    """Add the dashboard's routes to ``app`` (``app[AUTH]`` is set by the server)."""
    app[SNAPSHOTS] = Snapshots(app[CONTEXT])
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/", page)
    app.router.add_get("/dashboard/static/{name}", asset)
    app.router.add_get("/dashboard/login", login_link)
    app.router.add_post(f"{PREFIX}/login", login)
    app.router.add_post(f"{PREFIX}/logout", logout)
    app.router.add_get(f"{PREFIX}/session", session)
    app.router.add_get(f"{PREFIX}/snapshot", snapshot)
    app.router.add_get(f"{PREFIX}/events", events)
    app.router.add_post(f"{PREFIX}/reload", reload)
    app.router.add_post(f"{PREFIX}/approvals/{{approval_id}}/approve", approve_approval)
    app.router.add_post(f"{PREFIX}/approvals/{{approval_id}}/deny", deny_approval)
