"""Appservice-mode event source: the homeserver pushes transactions to an aiohttp
server (Matrix application service API, ``/_matrix/app/v1``).

Every event of a transaction is admitted durably into the inbox (through the same
:class:`~salon.matrix.source.EventSink` the client-mode sync loops feed) before the
transaction is answered 200, and then its id is recorded: a transaction seen again,
also after a restart, is answered 200 without work. A failure to admit answers 500,
so the homeserver sends it again (Synapse retries with backoff, one transaction in
flight, up to 100 events each). mautrix's own handler is not used for this: it
keeps seen ids only in memory and answers before its handlers finish.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web

from salon._exceptions import MatrixError
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.as_events import Members, split
from salon.matrix.source import EventSink, LoopStatus
from salon.metrics import EVENTS_DROPPED

log = structlog.get_logger("salon.matrix.appservice")

PREFIX = "/_matrix/app/v1"
SEED_CONCURRENCY = 16  # joined-rooms questions in flight at once at start


class TxnLog(Protocol):
    """Where admitted transaction ids are kept (``store.appservice_txns``)."""

    async def seen(self, txn_id: str) -> bool:
        """Whether the transaction was admitted before."""

    async def record(self, txn_id: str) -> None:
        """Remember an admitted transaction."""


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


@dataclass(frozen=True)
class ListenAddress:
    """Where the appservice listener binds (port 0: any free port), and the
    registration's ``id`` the homeserver knows the listener by (None: never pinged)."""

    host: str = "127.0.0.1"
    port: int = 9010
    appservice_id: str | None = None


def txn_key(hs_token: str, txn_id: str) -> str:
    """How a transaction id is kept: under its registration's token (hashed). The
    homeserver numbers transactions per registration and starts again at 1 for a new
    one, so a new registration's "1" is never taken for an old one already admitted."""
    return f"{hashlib.sha256(hs_token.encode()).hexdigest()[:16]}:{txn_id}"


class AppserviceSource:
    """Serves the application service API and feeds an :class:`EventSink`.

    ``owns`` says whether a user id is one of ours (answers the user query);
    ``apis`` are the identities whose joined rooms are asked once at start.
    """

    def __init__(
        self,
        hs_token: str,
        txns: TxnLog,
        *,
        router: UserId,
        owns: Callable[[str], bool],
        apis: Sequence[MatrixAPI] = (),
        listen: ListenAddress | None = None,
    ) -> None:
        listen = listen or ListenAddress()
        self._hs_token = hs_token
        self._txns = txns
        self._router = router
        self._owns = owns
        self._apis = {api.user_id: api for api in apis}
        self._host, self._port = listen.host, listen.port
        self._id = listen.appservice_id
        self.members = Members(router, owns)
        self._sink: EventSink | None = None
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()
        self.transactions = 0  # admitted (not counting repeats)
        self.repeats = 0
        self.last_error: str | None = None

    # --- the EventSource seam -------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        """Learn our users' rooms, then listen for transactions."""
        self._sink = sink
        # A few at a time: a thousand agents asked one by one took seconds.
        slots = asyncio.Semaphore(SEED_CONCURRENCY)

        async def seed(api: MatrixAPI) -> None:
            async with slots:
                await self._seed(api)

        await asyncio.gather(*(seed(api) for api in list(self._apis.values())))
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        log.info("appservice.listening", host=self._host, port=self.port)

    @property
    def port(self) -> int:
        """The port listened on (the real one when configured as 0)."""
        if self._runner is not None:
            for address in self._runner.addresses:
                return int(address[1])
        return self._port

    async def wait_ready(self, timeout: float) -> None:
        """Ready once listening. The homeserver is asked to ping the listener: a
        homeserver that found the gateway down waits out a growing backoff (Synapse:
        up to 8.5 min) before it sends what it holds, unless pinged."""
        router = self._apis.get(self._router)
        if self._id is None or router is None:
            return
        try:
            await asyncio.wait_for(router.ping_appservice(self._id), timeout)
        except (MatrixError, TimeoutError) as e:  # only sooner: it retries anyway
            log.warning("appservice.ping_failed", error=str(e) or type(e).__name__)

    async def stop(self) -> None:
        """Stop listening (an unanswered transaction is sent again later)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def status(self) -> list[LoopStatus]:
        """One entry: the listener, as the router."""
        running = self._runner is not None
        return [LoopStatus(self._router, running, 0, self.last_error, False)]

    async def add(self, api: MatrixAPI, timeout: float) -> None:
        """An identity added while running: its rooms are learnt; its events already come."""
        self._apis[api.user_id] = api
        await asyncio.wait_for(self._seed(api), timeout)

    async def remove(self, user_id: UserId) -> None:
        """An identity removed while running."""
        self._apis.pop(user_id, None)

    async def _seed(self, api: MatrixAPI) -> None:
        try:
            self.members.seed(api.user_id, await api.joined_rooms())
        except MatrixError as e:
            log.warning("appservice.rooms_unknown", user_id=api.user_id, error=str(e))

    # --- the HTTP side ------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application (also for tests, without a socket)."""
        app = web.Application(middlewares=[self._authorised])
        for prefix in (PREFIX, ""):  # "": the legacy unprefixed paths
            app.router.add_put(f"{prefix}/transactions/{{txn_id}}", self._transaction)
            app.router.add_get(f"{prefix}/users/{{user_id}}", self._user)
            app.router.add_get(f"{prefix}/rooms/{{alias}}", self._room)
        app.router.add_post(f"{PREFIX}/ping", self._ping)
        return app

    @web.middleware
    async def _authorised(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        token = token or request.query.get("access_token")
        if not token:
            return _error(401, "M_MISSING_TOKEN", "no homeserver token")
        given = token.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._hs_token.encode()):
            EVENTS_DROPPED.labels(reason="appservice_forbidden").inc()
            log.warning("appservice.forbidden", path=request.path)
            return _error(403, "M_FORBIDDEN", "wrong homeserver token")
        response: web.StreamResponse = await handler(request)
        return response

    async def _transaction(self, request: web.Request) -> web.Response:
        txn_id = txn_key(self._hs_token, request.match_info["txn_id"])
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "M_NOT_JSON", "the body is not JSON")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return _error(400, "M_BAD_JSON", "events: a list is required")
        # One at a time: the membership map follows the transactions' order.
        async with self._lock:
            try:
                if await self._txns.seen(txn_id):
                    self.repeats += 1
                    log.debug("appservice.repeat", txn_id=txn_id)
                    return web.json_response({})
                await self._admit(events)
                await self._txns.record(txn_id)
                self.members.commit()
            except Exception as e:  # the homeserver retries: nothing is lost
                self.members.discard()
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("appservice.admit_failed", txn_id=txn_id, error=self.last_error)
                return _error(500, "M_UNKNOWN", "could not admit the transaction; retry")
        self.transactions += 1
        self.last_error = None
        return web.json_response({})

    async def _admit(self, events: list[Any]) -> None:
        sink = self._sink
        if sink is None:
            raise RuntimeError("the appservice source is not started")
        txn = split(events, self.members)
        for identity, batch in txn.batches:
            await sink.admit(identity, batch)
        for invite in txn.invites:
            try:
                await sink.invited(invite)
            except MatrixError as e:
                EVENTS_DROPPED.labels(reason="invite_failed").inc()
                log.warning("appservice.invite_failed", room_id=invite.room_id, error=str(e))

    async def _user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if self._owns(user_id):
            return web.json_response({})
        return _error(404, "M_NOT_FOUND", "not one of this appservice's users")

    async def _room(self, request: web.Request) -> web.Response:
        # Salon creates its rooms itself; an alias nobody made does not exist.
        return _error(404, "M_NOT_FOUND", "no such room")

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})
