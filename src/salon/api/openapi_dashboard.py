"""The OpenAPI document's dashboard paths: the page, its login, and its data
(:mod:`salon.api.dashboard`). The data endpoints take the dashboard's session
cookie as well as the bearer token; a POST with the cookie needs ``X-CSRF-Token``."""

from __future__ import annotations

from salon.api.openapi_schemas import JSON, STR, ref

OPEN: list[JSON] = []
OBJECT: JSON = {"type": "object"}


def _json(description: str, schema: JSON | None = None) -> JSON:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or OBJECT}},
    }


def _error(description: str) -> JSON:
    return _json(description, ref("Error"))


def _html(description: str, media: str = "text/html") -> JSON:
    return {"description": description, "content": {media: {"schema": STR}}}


UNAUTHORIZED = _error("No session cookie and no valid bearer token (`unauthorized`).")
BAD_HOST = _error("The `Host` header does not name this server (`bad_host`).")
CROSS_SITE = _error(
    "A POST from another site's page (`cross_site`), or with the session cookie but "
    "without the page's `X-CSRF-Token` (`csrf_failed`)."
)
PAGE = {"200": _html("The page."), "303": {"description": "To the page."}, "421": BAD_HOST}


def _get(summary: str, op: str, responses: JSON, *, open_: bool = False, **extra: object) -> JSON:
    body: JSON = {"tags": ["dashboard"], "summary": summary, "operationId": op}
    if open_:
        body["security"] = OPEN
    return {"get": {**body, **extra, "responses": responses}}


APPROVAL_ID: JSON = {
    "name": "approval_id",
    "in": "path",
    "required": True,
    "schema": STR,
    "example": "3f2a9c1b7d4e",
}


def _decide(verb: str, summary: str) -> JSON:
    """An approval decided from the dashboard: the admin route's, with the session."""
    return {
        "post": {
            "tags": ["dashboard"],
            "summary": summary,
            "operationId": f"dashboard{verb.capitalize()}Approval",
            "parameters": [APPROVAL_ID],
            "responses": {
                "200": _json("The request as decided now.", ref("Approval")),
                "401": UNAUTHORIZED,
                "403": CROSS_SITE,
                "404": _error("No such request (`approval_not_found`)."),
                "409": _error("Already answered (`approval_decided`) or approvals off."),
            },
        }
    }


DASHBOARD_PATHS: JSON = {
    "/api/v1/dashboard/approvals/{approval_id}/approve": _decide(
        "approve", "Run the call (as `POST /api/v1/approvals/{id}/approve`)"
    ),
    "/api/v1/dashboard/approvals/{approval_id}/deny": _decide(
        "deny", "Refuse the call (as `POST /api/v1/approvals/{id}/deny`)"
    ),
    "/dashboard": _get(
        "The dashboard (redirects to `/dashboard/`)", "dashboardRoot", PAGE, open_=True
    ),
    "/dashboard/": _get(
        "The dashboard page (its data needs a session)", "dashboardPage", PAGE, open_=True
    ),
    "/dashboard/static/{name}": _get(
        "The page's script, style and icon (shipped in the package)",
        "dashboardAsset",
        {
            "200": _html("The file.", "text/javascript"),
            "404": _error("No such file."),
            "421": BAD_HOST,
        },
        open_=True,
        parameters=[
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": STR,
                "example": "dashboard.js",
            }
        ],
    ),
    "/dashboard/login": _get(
        "Open a one-time login link: sets the session cookie once, then redirects to the page",
        "dashboardLoginLink",
        PAGE,
        open_=True,
        parameters=[{"name": "code", "in": "query", "required": True, "schema": STR}],
    ),
    "/api/v1/dashboard/login": {
        "post": {
            "tags": ["dashboard"],
            "summary": "Log in with the API token: sets the session cookie",
            "operationId": "dashboardLogin",
            "security": OPEN,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": OBJECT, "example": {"token": "…"}}},
            },
            "responses": {
                "200": _json("Logged in (`Set-Cookie`)."),
                "400": _error("No `token` (`invalid_request`)."),
                "401": _error("Wrong token (`login_failed`)."),
                "403": CROSS_SITE,
                "421": BAD_HOST,
            },
        }
    },
    "/api/v1/dashboard/logout": {
        "post": {
            "tags": ["dashboard"],
            "summary": "End the browser's session",
            "operationId": "dashboardLogout",
            "responses": {"200": _json("Logged out."), "401": UNAUTHORIZED, "403": CROSS_SITE},
        }
    },
    "/api/v1/dashboard/session": _get(
        "The session's CSRF token (null when called with the bearer token)",
        "dashboardSession",
        {"200": _json("The CSRF token and the gateway's name."), "401": UNAUTHORIZED},
    ),
    "/api/v1/dashboard/snapshot": _get(
        "Everything the dashboard shows: agents, turns, delegations, charts, operations",
        "dashboardSnapshot",
        {"200": _json("The snapshot."), "401": UNAUTHORIZED},
    ),
    "/api/v1/dashboard/events": _get(
        "Server-sent `snapshot` events: one at once, then one whenever it changes",
        "dashboardEvents",
        {
            "200": _html("The event stream.", "text/event-stream"),
            "401": UNAUTHORIZED,
            "406": _error("Sent without `Accept: text/event-stream` (`not_acceptable`)."),
        },
    ),
    "/api/v1/dashboard/reload": {
        "post": {
            "tags": ["dashboard"],
            "summary": "Reload the config now; what the reload did",
            "operationId": "dashboardReload",
            "responses": {
                "200": _json("The reload's outcome: `ok`, `error`, `added`, `removed`…"),
                "400": _error("This gateway cannot reload (`invalid_request`)."),
                "401": UNAUTHORIZED,
                "403": CROSS_SITE,
            },
        }
    },
}
