"""Appservice-mode event source: the homeserver pushes transactions to an aiohttp
server (Matrix application service API, ``/_matrix/app/v1``).

Every event of a transaction is admitted durably into the inbox (through the same
:class:`~salon.matrix.source.EventSink` the client-mode sync loops feed) before the
transaction is answered 200, and then it is recorded (its id and its events' ids):
a transaction seen again, also after a restart, is answered 200 without work. A
failure to admit answers 500, so the homeserver sends it again (Synapse retries
with backoff, one transaction in flight, up to 100 events each). mautrix's own
handler is not used for this: it keeps seen ids only in memory and answers before
its handlers finish. A transaction pushed while the gateway is still starting is
parked durably and answered at once, then admitted once ready (see ``as_txns``).

With a :class:`~salon.matrix.as_catchup.CatchUp` set (``catchup``), each room's
newest pushed event is kept as its mark, and the rooms are read back to their
marks at start, after an outage (:meth:`AppserviceSource.catch_up`) and once a
transaction answered 500 is admitted on its retry (the homeserver may have
restarted meanwhile, too quickly to be seen down): what the homeserver never
pushed is admitted then. So when the homeserver's transaction numbers skip one
that no process of ours took (:class:`~salon.matrix.as_txns.GapWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from aiohttp import web

from salon._exceptions import MatrixError
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.as_catchup import CatchUp
from salon.matrix.as_events import Members, split
from salon.matrix.as_keys import OpeningSink, TransactionKeys
from salon.matrix.as_ping import ping_homeserver
from salon.matrix.as_txns import LEFTOVER_AGE_MS, GapWatch, TxnLog, drain, txn_key, txn_seq
from salon.matrix.source import EventSink, LoopStatus
from salon.metrics import EVENTS_DROPPED
from salon.store.appservice import ParkedTxn

log = structlog.get_logger("salon.matrix.appservice")

PREFIX = "/_matrix/app/v1"
SEED_CONCURRENCY = 16  # joined-rooms questions in flight at once at start


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


@dataclass(frozen=True)
class ListenAddress:
    """Where the appservice listener binds (port 0: any free port), and the
    registration's ``id`` the homeserver knows the listener by (None: never pinged)."""

    host: str = "127.0.0.1"
    port: int = 9010


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
        self._gaps = GapWatch(txns)
        self._gap_timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self._pinger: asyncio.Task[None] | None = None
        self._sink: EventSink | None = None
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()
        self.transactions = 0  # admitted (not counting repeats)
        self.repeats = 0
        self.parked = 0  # taken while starting, admitted at start
        self.last_error: str | None = None
        self.catchup: CatchUp | None = None
        # Joined rooms known already (a warm start's; not asked at start: see relearn).
        self.known: Mapping[UserId, Iterable[str]] = {}
        self._refused = False  # a transaction was answered 500 since the last admitted

    # --- the EventSource seam -------------------------------------------------

    async def listen(self) -> None:
        """Take connections (also before :meth:`start`: transactions are parked until
        then, so a homeserver pushing during the gateway's start never finds it down)."""
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
        self.catchup.start(rooms, OpeningSink(self._keys, self._sink))

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
        # Parked ones first, in order (live ones park behind them meanwhile); the lock
        # is kept from the last one until the sink is set, then live ones go straight in.
        if drained := await drain(self._txns, self._lock, partial(self._take_parked, sink)):
            log.info("appservice.parked_admitted", transactions=drained)
        async with self._lock:
            if await self._txns.parked():  # one parked after the last read: go on
                await drain(self._txns, None, partial(self._take_parked, sink))
            self._sink = sink
        await self.listen()
        self.catch_up()
        self._pinger = await ping_homeserver(self._apis.get(self._router), self.appservice_id)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="appservice-keys-sweep")

    async def _take_parked(self, sink: EventSink, parked: ParkedTxn) -> None:
        try:
            if await self._take(sink, parked.txn_id, parked.seq, json.loads(parked.body)):
                self.transactions += 1
        except Exception:
            self.members.discard()
            raise  # kept: admitted by the next try (a start, or a running gateway)

    async def _sweep_loop(self) -> None:
        leftovers_at = 0.0
        while True:
            await asyncio.sleep(max(0.25, self._keys.sweep_interval_s()))
            if (now := time.monotonic()) - leftovers_at > LEFTOVER_AGE_MS / 1000:
                leftovers_at = now  # a gateway that died while starting parked them
                with contextlib.suppress(Exception):
                    await self._leftovers()
            try:
                async with self._lock:  # the same order as transactions
                    for identity, opened in await self._keys.sweep():
                        assert self._sink is not None
                        await self._sink.admit(identity, opened)
            except Exception as e:  # the next round tries again
                log.warning("appservice.sweep_failed", error=f"{type(e).__name__}: {e}")

    async def _leftovers(self) -> None:
        sink = self._sink
        if sink is not None:
            take = partial(self._take_parked, sink)
            if n := await drain(self._txns, self._lock, take, older_than_ms=LEFTOVER_AGE_MS):
                log.warning("appservice.parked_leftovers_admitted", transactions=n)

    @property
    def port(self) -> int:
        """The port listened on (the real one when configured as 0)."""
        if self._runner is not None:
            for address in self._runner.addresses:
                return int(address[1])
        return self._port

    async def wait_ready(self, timeout: float) -> None:
        """Ready once listening: the homeserver delivers what it holds from then on."""

    async def park(self) -> None:
        """Stop admitting, go on listening: what comes is parked for the next start (a
        closed port made Synapse back off for seconds after a restart)."""
        await self.stop(listening=True)
        async with self._lock:  # a transaction being admitted finishes first
            self._sink = None

    async def stop(self, *, listening: bool = False) -> None:
        """Stop listening (an unanswered transaction is sent again later)."""
        self._stopping = True  # no catch-up booked from here on
        if self.catchup is not None:
            await self.catchup.stop()
        for task in (self._sweeper, self._pinger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweeper = self._pinger = None
        if self._runner is not None and not listening:
            await self._runner.cleanup()
            self._runner = None
        if self._gap_timer is not None:
            self._gap_timer.cancel()

    def status(self) -> list[LoopStatus]:
        """One entry: the listener, as the router."""
        return [LoopStatus(self._router, self._runner is not None, 0, self.last_error, False)]

    async def add(self, api: MatrixAPI, timeout: float) -> None:
        """An identity added while running: its rooms are learnt; its events already come."""
        self._apis[api.user_id] = api
        await asyncio.wait_for(self._seed(api), timeout)

    async def remove(self, user_id: UserId) -> None:
        """An identity removed while running."""
        self._apis.pop(user_id, None)

    async def relearn(self, api: MatrixAPI) -> set[RoomId]:
        """Ask an identity's joined rooms again and take them as they are now."""
        self.members.reset(api.user_id, rooms := set(await api.joined_rooms()))
        return rooms

    async def _seed(self, api: MatrixAPI) -> None:
        try:
            known = self.known.get(api.user_id)
            self.members.seed(api.user_id, known or await api.joined_rooms())
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
        txn_id = txn_key(self._hs_token, request.match_info["txn_id"], events)
        seq = txn_seq(request.match_info["txn_id"])
        # One at a time: the membership map follows the transactions' order.
        async with self._lock:
            sink = self._sink
            try:
                if sink is None:  # still starting: kept durably, admitted at start
                    self.parked += await self._txns.park(txn_id, seq, json.dumps(body))
                    return web.json_response({})
                if not await self._take(sink, txn_id, seq, body):
                    return web.json_response({})
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

    async def _take(
        self, sink: EventSink, txn_id: str, seq: int | None, body: dict[str, Any]
    ) -> bool:
        """Admit one transaction unless seen before (False: a repeat, answered as done)."""
        if await self._txns.seen(txn_id):
            self.repeats += 1
            log.debug("appservice.repeat", txn_id=txn_id)
            self._accepted()
            return False
        missed = await self._gaps.missed(seq) and self.catchup is not None
        if missed and self.catchup is not None:
            # Before this one moves the marks past what was missed; a run under way
            # must not end the hold: the catch-up booked below reads back to them.
            self.catchup.hold(until_next=True)
        await self._admit(sink, body.get("events") or [], body)
        await self._txns.record(txn_id, seq)
        if self.catchup is not None:
            await self.catchup.pushed(body.get("events") or [])
        self.members.commit()
        if missed and self._gap_timer is None and not self._stopping:
            delay = self._gaps.delay_s()
            log.info("appservice.txn_gap", seq=seq, catch_up_in_s=round(delay, 1))
            self._gap_timer = asyncio.get_running_loop().call_later(delay, self._gap_catch_up)
        elif missed:
            log.info("appservice.txn_gap", seq=seq, catch_up="booked already")
        return True

    def _gap_catch_up(self) -> None:
        self._gap_timer = None
        if not self._stopping:
            self.catch_up()

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

    async def _admit(self, sink: EventSink, events: list[Any], body: dict[str, Any]) -> None:
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
