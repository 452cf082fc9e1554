"""One aiohttp server inside the gateway: routes, the request guards, JSON errors.

Every route but ``/healthz`` needs ``Authorization: Bearer <token>`` and a ``Host``
that names this server; bodies must be JSON (:mod:`salon.api.guards`). Errors are
JSON with a stable code from the catalogue (``salon.responses.API_ERRORS``):
``{"error": {"code": "agent_not_found", "message": "…"}}``, never a traceback.
The route modules (:mod:`salon.api.admin`, :mod:`salon.api.openai`,
:mod:`salon.api.health`) each add their routes with ``add_routes(app, ctx)``.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from salon._exceptions import ConfigError
from salon.api.context import ApiContext
from salon.config.models import ApiConfig
from salon.responses import api_error

log = structlog.get_logger("salon.api")

CONTEXT: web.AppKey[ApiContext] = web.AppKey("salon_context", ApiContext)
# The largest request body read (aiohttp's default; more is 413 body_too_large).
MAX_BODY_BYTES = 1024**2
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answer with a catalogue code (``salon.responses.API_ERRORS``)."""

    def __init__(self, code: str, /, **values: Any) -> None:
        self.code = code
        self.status, self.message = api_error(code, **values)
        super().__init__(self.message)


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON body of an error answer (OpenAI's shape, with Salon's stable code)."""
    return {"error": {"code": code, "message": message, "type": code}}


def json_error(
    code: str, /, headers: Mapping[str, str] | None = None, **values: Any
) -> web.Response:
    """An error answer for ``code`` (with ``headers``, if any)."""
    status, message = api_error(code, **values)
    return web.json_response(error_body(code, message), status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error with a code; nothing leaks a traceback."""
    try:
        return await handler(request)
    except ApiError as e:
        return web.json_response(error_body(e.code, e.message), status=e.status)
    except web.HTTPNotFound:
        return json_error("not_found", path=request.path)
    except web.HTTPRequestEntityTooLarge:
        return json_error("body_too_large", limit=MAX_BODY_BYTES)
    except web.HTTPMethodNotAllowed:
        return json_error("invalid_request", detail=f"{request.method} is not allowed here")
    except web.HTTPException:
        raise
    except Exception as e:
        log.exception("api.failed", path=request.path)
        return json_error("internal_error", kind=type(e).__name__)


def build_app(
    ctx: ApiContext, token: str, listen_host: str = "127.0.0.1", allowed_hosts: Iterable[str] = ()
) -> web.Application:
    """The application with every route module's routes, behind the guards."""
    from salon.api import a2a, admin, attachment_links, dashboard, health, openai
    from salon.api.dashboard_auth import DashboardAuth
    from salon.api.guards import HostCheck, auth_middleware, host_middleware, media_type_middleware

    auth = DashboardAuth(token)
    guards: list[Middleware] = [
        host_middleware(HostCheck(listen_host, allowed_hosts)),
        auth_middleware(token, auth),
        media_type_middleware,
    ]
    app = web.Application(middlewares=[errors_middleware, *guards], client_max_size=MAX_BODY_BYTES)
    app[CONTEXT] = ctx
    app[dashboard.AUTH] = auth
    links = getattr(ctx, "links", None)  # tests hand in bare contexts
    if links is not None:
        app[attachment_links.LINKS] = links
    for module in (health, admin, openai, attachment_links, a2a, dashboard):
        module.add_routes(app)
    return app


class ApiServer:
    """The HTTP server of one gateway (started after the gateway is ready)."""

    def __init__(self, config: ApiConfig, ctx: ApiContext, token: str) -> None:
        self.config = config
        self.token = token  # `salon run` writes it to api.json
        self.context = ctx  # a reload swaps parts of it (the router)
        self.app = build_app(ctx, token, config.host, config.allowed_hosts)
        self._runner: web.AppRunner | None = None
        self.port = config.port

    def login_link(self, base_url: str | None = None) -> str:
        """A one-time link that logs a browser into the dashboard (``base_url``: how
        clients reach this server; default its listen URL)."""
        from salon.api.dashboard import AUTH

        return self.app[AUTH].login_link(base_url or self.url)

    @property
    def url(self) -> str:
        """The server's base URL."""
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        """Listen on the configured port, or (``api.port_tries``) the next free one; the
        port got is in ``port`` (also for port 0: any free one).

        Raises:
            ConfigError: every port tried is taken (or the address cannot be had).
        """
        sock = listen_socket(self.config.host, self.config.port, self.config.port_tries)
        self.port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(self.app, access_log=None)
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            raise
        if self.port != self.config.port and self.config.port:
            log.warning("api.port_taken", wanted=self.config.port, port=self.port)
        log.info("api.listening", url=self.url)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def listen_socket(host: str, port: int, tries: int = 1) -> socket.socket:
    """A socket listening on ``host:port``, or on the next of ``tries`` ports when one
    is taken. Binding and listening is the claim: two servers choosing at once never
    get the same port, and the loser moves on (a probe before a later bind would race).

    Raises:
        ConfigError: every port tried is taken, or ``host`` cannot be listened on.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as e:
        raise ConfigError(f"api.listen: cannot listen on {host}: {e}", path="api.listen") from e
    last = port if port == 0 else min(port + tries - 1, 65535)
    for candidate in range(port, last + 1):
        sock = socket.socket(family, kind, proto)
        try:
            if os.name == "posix":  # as aiohttp does; never SO_REUSEPORT (shares the port)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address[0], candidate, *address[2:]))
            sock.listen(128)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE and candidate < last:
                continue
            if e.errno != errno.EADDRINUSE:
                problem = f"cannot listen on {host}:{candidate}: {e}"
            elif last == port:
                problem = f"port {port} on {host} is in use"
            else:
                problem = f"ports {port}-{last} on {host} are all in use"
            raise ConfigError(
                f"api.listen: {problem}; choose another port (0: any free one)",
                path="api.listen",
            ) from e
        sock.setblocking(False)
        return sock
    raise AssertionError("unreachable")  # the loop returns or raises
