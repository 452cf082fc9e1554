"""What every request must pass before a route sees it: an allowed ``Host``, the
bearer token, and JSON bodies sent as JSON.

- ``Host`` must name this server (the listen address or a loopback name, on the
  port the connection came in on) or an ``api.allowed_hosts`` entry: a web page on
  a rebound DNS name cannot reach the API through the person's browser (421
  ``bad_host``).
- ``Authorization: Bearer <token>`` is compared as bytes in constant time, so any
  header (non-ASCII too) is a 401 ``unauthorized``, never a crash.
- A body on POST, PUT or PATCH must be ``Content-Type: application/json`` (415
  ``unsupported_media_type``): a cross-site form or ``text/plain`` post is refused.

``/healthz`` passes all three: a container health check calls it by any name, and
it tells nothing but "alive". ``/v1/attachments/<token>`` needs no bearer token: the
signed, short-lived token in its path is the credential
(:mod:`salon.api.attachment_links`). The dashboard's page and assets need nothing;
its data endpoints take its session cookie instead of the token, and its POSTs are
checked for cross-site origin and CSRF first (:mod:`salon.api.dashboard_auth`).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from salon.api.dashboard_auth import (
    DASHBOARD_API,
    REFUSED,
    SESSION,
    DashboardAuth,
    cross_site,
    csrf_ok,
    is_public,
)
from salon.api.server import Handler, json_error

OPEN_PATHS = frozenset({"/healthz"})
# A link to an attachment carries its own signed, short-lived token instead.
OPEN_PREFIXES = ("/v1/attachments/",)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_TYPE = "application/json"


def _secret_bytes(text: str) -> bytes:
    # Any header text encodes (lone surrogates too), so comparing never raises.
    return text.encode("utf-8", "surrogatepass")


def auth_middleware(token: str, dashboard: DashboardAuth | None = None) -> Middleware:
    """Require the bearer token (compared in constant time) on every closed path; on
    the dashboard's, its session cookie does too (with the CSRF token on a POST)."""
    expected = _secret_bytes(token)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if dashboard is not None and request.path.startswith(("/dashboard", DASHBOARD_API)):
            refused = _dashboard_refusal(request, dashboard)
            if refused is not None:
                return refused
            if is_public(request.path) or SESSION in request:
                return await handler(request)
        if request.path not in OPEN_PATHS and not request.path.startswith(OPEN_PREFIXES):
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            good = hmac.compare_digest(_secret_bytes(value.strip()), expected)
            if scheme.lower() != "bearer" or not good:
                return json_error("unauthorized")
        return await handler(request)

    return check


def _dashboard_refusal(request: web.Request, dashboard: DashboardAuth) -> web.Response | None:
    """A cross-site POST, or a cookie POST without the CSRF token, is refused; a live
    session cookie is remembered on the request."""
    posting = request.method not in ("GET", "HEAD", "OPTIONS")
    if posting and request.path.startswith(DASHBOARD_API):
        why = cross_site(request)
        if why is not None:
            REFUSED.labels(reason="cross_site").inc()
            return json_error("cross_site", detail=why)
    session = dashboard.session(request)
    if session is None or is_public(request.path):
        return None
    if posting and not csrf_ok(request, session):
        REFUSED.labels(reason="csrf").inc()
        return json_error("csrf_failed")
    request[SESSION] = session
    return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` as (lower-case name, port or None); None if it is malformed.
    An IPv6 literal keeps its brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else ""
    else:
        name, _, port = value.partition(":")
        if ":" in port:
            return None  # a bare IPv6 literal is no Host
    name = name.rstrip(".")
    if not name or (port and not (port.isdigit() and int(port) < 65536)):
        return None
    return name, int(port) if port else None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class HostCheck:
    """The names a request's ``Host`` may carry."""

    def __init__(self, listen_host: str, allowed: Iterable[str] = ()) -> None:
        # The listen address and the loopback names: on the port the request came in on.
        self.local = {_bracketed(listen_host.lower()), *LOOPBACK_NAMES}
        self.any_port: set[str] = set()
        self.exact: set[tuple[str, int]] = set()
        for entry in allowed:
            parsed = split_host(entry)
            if parsed is None:
                continue  # the config validates entries; a stray one allows nothing
            name, port = parsed
            if port is None:
                self.any_port.add(name)
            else:
                self.exact.add((name, port))

    def allows(self, host: str, local_port: int | None) -> bool:
        """Whether ``host`` (the header) names this server, reached on ``local_port``."""
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        if name in self.any_port:
            return True
        if port is not None and (name, port) in self.exact:
            return True
        effective = port if port is not None else 80
        return name in self.local and (local_port is None or effective == local_port)


def _local_port(request: web.Request) -> int | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return None


def host_middleware(check: HostCheck) -> Middleware:
    """Answer only requests whose ``Host`` names this server (421 ``bad_host``)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            host = request.headers.get("Host", "")
            if not check.allows(host, _local_port(request)):
                return json_error("bad_host", host=host[:100])
        return await handler(request)

    return guard


@web.middleware
async def media_type_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body on POST, PUT or PATCH must be JSON, said so (415 ``unsupported_media_type``)."""
    if request.method in BODY_METHODS and request.body_exists and request.content_type != JSON_TYPE:
        given = request.headers.get("Content-Type", "none")
        return json_error("unsupported_media_type", given=given[:100])
    return await handler(request)
