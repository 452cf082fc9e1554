"""One aiohttp server inside the gateway: routes, the request guards, JSON errors.

Every route but ``/healthz`` needs ``Authorization: Bearer <token>`` and a ``Host``
that names this server; bodies must be JSON (:mod:`salon.api.guards`). Errors are
JSON with a stable code from the catalogue (``salon.responses.API_ERRORS``):
``{"error": {"code": "agent_not_found", "message": "…"}}``, never a traceback.
The route modules (:mod:`salon.api.admin`, :mod:`salon.api.openai`,
:mod:`salon.api.health`) each add their routes with ``add_routes(app, ctx)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

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
    from salon.api import admin, health, openai
    from salon.api.guards import HostCheck, auth_middleware, host_middleware, media_type_middleware

    guards: list[Middleware] = [
        host_middleware(HostCheck(listen_host, allowed_hosts)),
        auth_middleware(token),
        media_type_middleware,
    ]
    app = web.Application(middlewares=[errors_middleware, *guards], client_max_size=MAX_BODY_BYTES)
    app[CONTEXT] = ctx
    for module in (health, admin, openai):
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

    @property
    def url(self) -> str:
        """The server's base URL."""
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        """Listen (the port may be 0: the chosen one is in ``port`` then)."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("api.listening", url=self.url)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
