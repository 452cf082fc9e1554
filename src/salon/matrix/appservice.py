"""Appservice-mode event source: the homeserver pushes transactions to an aiohttp
server (Matrix application service API, ``/_matrix/app/v1``).

Every event of a transaction is admitted durably into the inbox (through the same
:class:`~salon.matrix.source.EventSink` the client-mode sync loops feed) before the
transaction is answered 200, and then it is recorded (its id and its events' ids):
a transaction seen again, also after a restart, is answered 200 without work. A
failure to admit answers 500, so the homeserver sends it again (Synapse retries
with backoff, one transaction in flight, up to 100 events each). mautrix's own
handler is not used for this: it keeps seen ids only in memory and answers before
its handlers finish.

With a :class:`~salon.matrix.as_catchup.CatchUp` set (``catchup``), each room's
newest pushed event is kept as its mark, and the rooms are read back to their
marks at start, after an outage (:meth:`AppserviceSource.catch_up`) and once a
transaction answered 500 is admitted on its retry (the homeserver may have
restarted meanwhile, too quickly to be seen down): what the homeserver never
pushed is admitted then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web

from salon._exceptions import MatrixError, MatrixRequestError
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.as_catchup import CatchUp
from salon.matrix.as_events import Members, split
from salon.matrix.as_keys import TransactionKeys
from salon.matrix.events import InboundEvent, Invite
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


def txn_key(hs_token: str, txn_id: str, events: Sequence[object]) -> str:
    """How a transaction is kept: its id under its registration's token (hashed), and
    a digest of its events' ids. The homeserver numbers transactions per registration
    and starts again at 1 for a new one; Synapse on SQLite also starts again after a
    restart (the next id is one past the highest *unsent* one, usually none). A retry
    carries the same events under the same id, so only that is answered without work;
    a reused id with other events is a new transaction (the inbox ignores an event
    admitted before, so admitting one twice is harmless; dropping one is not)."""
    ids = "\n".join(str(e.get("event_id")) for e in events if isinstance(e, dict))
    digest = hashlib.sha256(ids.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{hashlib.sha256(hs_token.encode()).hexdigest()[:16]}:{txn_id}:{digest}"


class AppserviceSource:
    """Serves the application service API and feeds an :class:`EventSink`.

    ``owns`` says whether a user id is one of ours (answers the user query);
    ``apis`` are the identities whose joined rooms are asked once at start;
    ``appservice_id`` (its registration's id), when set, is pinged once listening.
    """

    appservice_id: str | None = None

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
        self.members = Members(router, owns)
        self._keys = TransactionKeys(self._apis)
        self._sweeper: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._sink: EventSink | None = None
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()
        self.transactions = 0  # admitted (not counting repeats)
        self.repeats = 0
        self.last_error: str | None = None
        self.catchup: CatchUp | None = None
        self._refused = False  # a transaction was answered 500 since the last admitted

    # --- the EventSource seam -------------------------------------------------

    async def listen(self) -> None:
        """Take connections (also before :meth:`start`: transactions then wait for it,
        so a homeserver pushing during the gateway's start never finds it down)."""
        if self._runner is not None:
            return
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        log.info("appservice.listening", host=self._host, port=self.port)

    def serve(self, apis: Iterable[MatrixAPI]) -> None:
        """The identities whose transactions are admitted (logged in once listening)."""
        self._apis.update({api.user_id: api for api in apis})

    def catch_up(self) -> None:
        """Read every joined room back to its mark in the background (at start, and
        when the homeserver answers again after an outage)."""
        if self.catchup is None or self._sink is None:
            return
        rooms = {}
        for room_id, joined in self.members.rooms.items():
            api = self._apis.get(self.members.reader(room_id)) if joined else None
            if api is not None:
                rooms[RoomId(room_id)] = api
        self.catchup.start(rooms, _Opening(self._keys, self._sink))

    def outage(self, down: bool) -> None:
        """The homeserver stopped answering (events may be lost: marks are held) or
        answers again (catch up)."""
        if self.catchup is None:
            return
        if down:
            self.catchup.hold()
        elif self._runner is not None:
            self.catch_up()

    async def start(self, sink: EventSink) -> None:
        """Learn our users' rooms, then admit transactions (listening if not yet)."""
        # A few at a time: a thousand agents asked one by one took seconds.
        slots = asyncio.Semaphore(SEED_CONCURRENCY)

        async def seed(api: MatrixAPI) -> None:
            async with slots:
                await self._seed(api)

        await asyncio.gather(*(seed(api) for api in list(self._apis.values())))
        self._sink = sink
        self._started.set()
        await self.listen()
        self.catch_up()
        await self._ping_homeserver()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="appservice-keys-sweep")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.25, self._keys.sweep_interval_s()))
            try:
                async with self._lock:  # the same order as transactions
                    for identity, opened in await self._keys.sweep():
                        assert self._sink is not None
                        await self._sink.admit(identity, opened)
            except Exception as e:  # the next round tries again
                log.warning("appservice.sweep_failed", error=f"{type(e).__name__}: {e}")

    async def _ping_homeserver(self) -> None:
        # A homeserver that found us down holds transactions back (Synapse: backing off
        # for up to minutes) and meanwhile drops to-device messages, room keys among
        # them; a ping makes it retry at once. Synapse fails a ping that races its own
        # retry ("AlreadyCalled"): pinged again, the next one wins, in the background
        # (the start waited a second for it).
        if not await self._ping_once(1):
            self._pinger = asyncio.create_task(self._ping_again(), name="appservice-ping")

    async def _ping_again(self, attempts: int = 5, pause_s: float = 1.0) -> None:
        for attempt in range(2, attempts + 1):
            await asyncio.sleep(pause_s)
            if await self._ping_once(attempt):
                return

    async def _ping_once(self, attempt: int) -> bool:
        """One ping; True if it is done (answered, or refused for good)."""
        api = self._apis.get(self._router)
        if self.appservice_id is None or api is None:
            return True
        try:
            await api.ping_appservice(self.appservice_id)
            return True
        except MatrixError as e:
            log.warning("appservice.ping_failed", error=str(e), attempt=attempt)
            # Refused (no ping endpoint, wrong id): asking again won't help.
            return isinstance(e, MatrixRequestError) and e.http_status < 500

    @property
    def port(self) -> int:
        """The port listened on (the real one when configured as 0)."""
        if self._runner is not None:
            for address in self._runner.addresses:
                return int(address[1])
        return self._port

    async def wait_ready(self, timeout: float) -> None:
        """Ready once listening: the homeserver delivers what it holds from then on."""

    async def stop(self) -> None:
        """Stop listening (an unanswered transaction is sent again later)."""
        if self.catchup is not None:
            await self.catchup.stop()
        for task in (self._sweeper, self._pinger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweeper = self._pinger = None
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
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "M_NOT_JSON", "the body is not JSON")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return _error(400, "M_BAD_JSON", "events: a list is required")
        if self._sink is None:
            await self._started.wait()  # listening early: held until the gateway is ready
        txn_id = txn_key(self._hs_token, request.match_info["txn_id"], events)
        # One at a time: the membership map follows the transactions' order.
        async with self._lock:
            try:
                if await self._txns.seen(txn_id):
                    self.repeats += 1
                    log.debug("appservice.repeat", txn_id=txn_id)
                    self._accepted()
                    return web.json_response({})
                await self._admit(events, body)
                await self._txns.record(txn_id)
                if self.catchup is not None:
                    await self.catchup.pushed(events)
                self.members.commit()
            except Exception as e:  # the homeserver retries: nothing is lost
                self.members.discard()
                self._refused_one()
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("appservice.admit_failed", txn_id=txn_id, error=self.last_error)
                return _error(500, "M_UNKNOWN", "could not admit the transaction; retry")
        self.transactions += 1
        self.last_error = None
        self._accepted()
        return web.json_response({})

    def _accepted(self) -> None:
        if self._refused:  # the refused one's retry, or a later one: read back now
            self._refused = False
            self.catch_up()

    def _refused_one(self) -> None:
        # The homeserver now holds the events behind the refused transaction, Synapse
        # some only in memory: a restart before it sends them again loses them, and a
        # quick restart is no outage seen from here. So the marks are held, and the
        # next admitted transaction (its retry) starts a catch-up.
        self._refused = True
        if self.catchup is not None:
            self.catchup.hold()

    async def _admit(self, events: list[Any], body: dict[str, Any]) -> None:
        sink = self._sink
        if sink is None:
            raise RuntimeError("the appservice source is not started")
        txn = split(events, self.members)
        readers = {identity for identity, _ in txn.batches}
        # Keys first: events of this transaction (or kept from before) may need them.
        for identity, opened in await self._keys.take(body, readers):
            await sink.admit(identity, opened)
        for identity, batch in txn.batches:
            # Opened before admission; one whose key has not come is kept in the store.
            batch = await self._keys.open(identity, batch)
            if batch:
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


class _Opening:
    """A sink that opens encrypted events first, as transactions are: what the
    catch-up reads back is admitted the same way as what was pushed."""

    def __init__(self, keys: TransactionKeys, sink: EventSink) -> None:
        self._keys, self._sink = keys, sink

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        opened = await self._keys.open(identity, list(events))
        if opened:
            await self._sink.admit(identity, opened)

    async def invited(self, invite: Invite) -> None:
        await self._sink.invited(invite)
