"""Who may use the dashboard: one-time login links, session cookies, CSRF tokens.

- ``salon up`` (and ``salon run`` with an API) prints a login link
  ``/dashboard/login?code=…`` (:meth:`DashboardAuth.login_link`): opening it once
  sets the session cookie and redirects to ``/dashboard/``; the code is then spent,
  so the URL left in the browser's history opens nothing.
- Without it, the page's form posts the API token to ``/api/v1/dashboard/login``.
- The cookie is HttpOnly and SameSite=Strict: page scripts cannot read it and no
  other site's page sends it. Each session has a CSRF token the page reads from
  ``GET /api/v1/dashboard/session`` (a same-origin read: no other site can); every
  state-changing dashboard call sends it back in ``X-CSRF-Token``.
- A POST under ``/api/v1/dashboard/`` from another site (``Origin`` naming another
  host, or ``Sec-Fetch-Site: cross-site``/``same-site``) is refused before anything
  else (403 ``cross_site``, counted in ``salon_dashboard_refused_total``).

A session is a signed cookie (no server-side table): it lasts 12 hours, or until
logged out; a gateway restarted with another token has forgotten it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import Counter

COOKIE = "salon_dashboard"
CSRF_HEADER = "X-CSRF-Token"
DASHBOARD_API = "/api/v1/dashboard/"
# The page, its assets and the login endpoints are reachable without a session.
PUBLIC_PATHS = frozenset(
    {"/dashboard", "/dashboard/", "/dashboard/login", "/api/v1/dashboard/login"}
)
PUBLIC_PREFIX = "/dashboard/static/"
SESSION_S = 12 * 3600.0
LINK_S = 24 * 3600.0
MAX_CLOSED = 10_000
# The request's session, once the guard has checked its cookie (set after Session below).
SESSION: web.RequestKey[Session]
REFUSED = Counter(
    "salon_dashboard_refused_total",
    "Dashboard requests refused: cross_site, csrf, login (a spent or unknown link or token)",
    ["reason"],
)


@dataclass
class Session:
    """One logged-in browser."""

    sid: str
    csrf: str


SESSION = web.RequestKey("salon_dashboard_session", Session)


@dataclass
class DashboardAuth:
    """Login codes (in memory, one use each) and signed session cookies.

    A cookie is ``<id>.<expiry>.<signature>``, signed with a key derived from the API
    token: a gateway restarted with the same token (``api.token_env``) still knows
    its sessions, so open pages reconnect; a new token (each `salon up`) ends them.
    """

    token: str
    _codes: dict[str, float] = field(default_factory=dict)
    _closed: dict[str, float] = field(default_factory=dict)  # logged out: sid → expiry

    def __post_init__(self) -> None:
        self._key = hashlib.sha256(b"salon-dashboard\0" + self.token.encode()).digest()

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new_code(self) -> str:
        """A fresh one-time login code (valid for a day, or until used)."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = time.time() + LINK_S
        return code

    def login_link(self, base_url: str) -> str:
        """A one-time link that logs a browser in."""
        return f"{base_url.rstrip('/')}/dashboard/login?code={self.new_code()}"

    def redeem(self, code: str) -> str | None:
        """A new session cookie value for ``code``, which is spent; None if unknown
        or spent."""
        expires = self._codes.pop(code, None)
        if expires is None or expires < time.time():
            REFUSED.labels(reason="login").inc()
            return None
        return self._open()

    def login_with_token(self, given: str) -> str | None:
        """A new session cookie value if ``given`` is the API token."""
        ok = hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.token.encode())
        if not ok:
            REFUSED.labels(reason="login").inc()
            return None
        return self._open()

    def _open(self) -> str:
        sid = secrets.token_urlsafe(18)
        body = f"{sid}.{int(time.time() + SESSION_S)}"
        return f"{body}.{self._sign('s:' + body)}"

    def session(self, request: web.Request) -> Session | None:
        """The live session the request's cookie names, if any."""
        value = request.cookies.get(COOKIE, "")
        sid, _, rest = value.partition(".")
        expiry, _, signature = rest.partition(".")
        if not (sid and expiry.isdigit() and signature) or sid in self._closed:
            return None
        expected = self._sign(f"s:{sid}.{expiry}")
        if not hmac.compare_digest(signature.encode("ascii", "replace"), expected.encode()):
            return None
        if int(expiry) < time.time():
            return None
        return Session(sid=sid, csrf=self._sign("c:" + sid)[:32])

    def close(self, request: web.Request) -> None:
        """End the request's session (log out), until it would have expired anyway."""
        found = self.session(request)
        if found is None:
            return
        now = time.time()
        for sid in [s for s, until in self._closed.items() if until < now]:
            del self._closed[sid]
        if len(self._closed) < MAX_CLOSED:
            self._closed[found.sid] = now + SESSION_S


def set_cookie(response: web.StreamResponse, sid: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, for the whole server."""
    response.set_cookie(
        COOKIE, sid, httponly=True, samesite="Strict", path="/", max_age=int(SESSION_S)
    )


def is_public(path: str) -> bool:
    """Whether ``path`` is the page, an asset or a login endpoint (no session needed)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


def cross_site(request: web.Request) -> str | None:
    """Why a request comes from another site's page, or None when it does not."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or parts.netloc.lower() != request.host.lower():
            return f"Origin {origin[:100]!r} is not this server"
    return None


def csrf_ok(request: web.Request, session: Session) -> bool:
    """Whether the request carries the session's CSRF token."""
    given = request.headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), session.csrf.encode())
