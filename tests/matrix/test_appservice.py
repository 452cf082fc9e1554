"""The appservice transaction endpoint, with a fake sink and transaction log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.gateway.helpers import eventually

from salon.ids import UserId
from salon.matrix.appservice import AppserviceSource, ListenAddress
from salon.matrix.as_txns import GapWatch, txn_key
from salon.matrix.events import InboundEvent, Invite
from salon.store.appservice import ParkedTxn

ROUTER = UserId("@salon:localhost")
AGENT = UserId("@salon_echo:localhost")
TOKEN = "hs-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Sink:
    def __init__(self) -> None:
        self.admitted: list[tuple[UserId, list[str]]] = []
        self.invites: list[Invite] = []
        self.fail = False

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        if self.fail:
            raise RuntimeError("database is locked")
        await asyncio.sleep(0.05)  # a store write takes time: the answer must wait for it
        self.admitted.append((identity, [e.event_id for e in events]))

    async def invited(self, invite: Invite) -> None:
        self.invites.append(invite)


class Txns:
    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.seqs: set[int] = set()
        self.kept: dict[str, ParkedTxn] = {}

    async def seen(self, txn_id: str) -> bool:
        return txn_id in self.ids

    async def record(self, txn_id: str, seq: int | None = None) -> None:
        self.ids.add(txn_id)
        if seq is not None:
            self.seqs.add(seq)

    async def received(self, after: int, before: int, since: int) -> int:
        return len({s for s in self.seqs if after < s < before})

    async def park(self, txn_id: str, seq: int | None, body: str) -> bool:
        if txn_id in self.kept:
            return False
        self.kept[txn_id] = ParkedTxn(txn_id, seq, body)
        return True

    async def parked(self) -> list[ParkedTxn]:
        return [p for p in self.kept.values() if p.set_aside_at is None]

    async def failed(self, txn_id: str, reason: str, max_tries: int) -> bool:
        tries = self.kept[txn_id].tries + 1
        at = 1 if tries >= max_tries else None
        self.kept[txn_id] = replace(self.kept[txn_id], tries=tries, reason=reason, set_aside_at=at)
        return at is not None

    async def unpark(self, txn_id: str) -> None:
        del self.kept[txn_id]


def message(n: int, room: str = "!room:localhost", sender: str = "@bob:localhost") -> dict:
    return {
        "event_id": f"$e{n}",
        "room_id": room,
        "sender": sender,
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": f"hi {n}"},
        "origin_server_ts": 1000 + n,
    }


@pytest.fixture
async def setup() -> AsyncIterator[tuple[TestClient, Sink, Txns, AppserviceSource]]:
    sink, txns = Sink(), Txns()
    source = AppserviceSource(TOKEN, txns, router=ROUTER, owns=lambda u: u in (ROUTER, AGENT))
    source._sink = sink  # started without a socket: the test client serves the app
    async with TestClient(TestServer(source.app())) as client:
        yield client, sink, txns, source


async def test_events_admitted_before_200_and_txn_recorded(setup) -> None:
    client, sink, txns, _ = setup
    r = await client.put(
        "/_matrix/app/v1/transactions/t1", json={"events": [message(1), message(2)]}, headers=AUTH
    )
    assert r.status == 200
    assert sink.admitted == [(ROUTER, ["$e1", "$e2"])]
    assert txns.ids == {txn_key(TOKEN, "t1", [message(1), message(2)])}


async def test_repeated_txn_answered_without_work(setup) -> None:
    client, sink, txns, source = setup
    txns.ids.add(txn_key(TOKEN, "t1", [message(1)]))  # admitted before (e.g. a restart)
    r = await client.put(
        "/_matrix/app/v1/transactions/t1", json={"events": [message(1)]}, headers=AUTH
    )
    assert r.status == 200
    assert sink.admitted == []
    assert source.repeats == 1


async def test_a_new_registrations_first_transaction_is_not_taken_for_an_old_one(
    setup,
) -> None:
    client, sink, txns, _ = setup
    txns.ids.add(txn_key("an older registration's token", "t1", [message(1)]))  # the same
    r = await client.put(
        "/_matrix/app/v1/transactions/t1", json={"events": [message(1)]}, headers=AUTH
    )
    assert r.status == 200
    assert sink.admitted == [(ROUTER, ["$e1"])]


async def test_a_reused_id_with_other_events_is_a_new_transaction(setup) -> None:
    """Synapse on SQLite numbers transactions from 1 again after a restart: the same id
    with other events is admitted, not answered as a repeat (its events would be lost)."""
    client, sink, _, source = setup
    url = "/_matrix/app/v1/transactions/1"
    r = await client.put(url, json={"events": [message(1)]}, headers=AUTH)
    assert r.status == 200
    r = await client.put(url, json={"events": [message(2)]}, headers=AUTH)  # after a restart
    assert r.status == 200
    r = await client.put(url, json={"events": [message(2)]}, headers=AUTH)  # its retry
    assert r.status == 200
    assert sink.admitted == [(ROUTER, ["$e1"]), (ROUTER, ["$e2"])]
    assert source.repeats == 1 and source.transactions == 2


async def test_failed_admit_answers_500_and_is_not_recorded(setup) -> None:
    client, sink, txns, _ = setup
    sink.fail = True
    r = await client.put("/transactions/t2", json={"events": [message(3)]}, headers=AUTH)
    assert r.status == 500
    assert (await r.json())["errcode"] == "M_UNKNOWN"
    assert txns.ids == set()
    sink.fail = False  # the homeserver's retry goes through
    r = await client.put("/transactions/t2", json={"events": [message(3)]}, headers=AUTH)
    assert r.status == 200
    assert sink.admitted == [(ROUTER, ["$e3"])]


@pytest.mark.parametrize(
    ("headers", "query", "status", "errcode"),
    [
        ({"Authorization": "Bearer wrong"}, "", 403, "M_FORBIDDEN"),
        ({}, "?access_token=wrong", 403, "M_FORBIDDEN"),
        ({}, "", 401, "M_MISSING_TOKEN"),
    ],
)
async def test_wrong_token_refused(setup, headers, query, status, errcode) -> None:
    client, sink, txns, _ = setup
    r = await client.put(
        f"/_matrix/app/v1/transactions/t3{query}", json={"events": [message(4)]}, headers=headers
    )
    assert r.status == status
    assert (await r.json())["errcode"] == errcode
    assert sink.admitted == [] and txns.ids == set()


async def test_legacy_query_token_accepted(setup) -> None:
    client, sink, _, _ = setup
    r = await client.put(f"/transactions/t4?access_token={TOKEN}", json={"events": [message(5)]})
    assert r.status == 200
    assert sink.admitted == [(ROUTER, ["$e5"])]


async def test_bad_body_is_400(setup) -> None:
    client, _, txns, _ = setup
    r = await client.put("/_matrix/app/v1/transactions/t5", data="nope", headers=AUTH)
    assert r.status == 400
    assert txns.ids == set()


async def test_user_query_ping_and_rooms(setup) -> None:
    client, _, _, _ = setup
    assert (await client.get(f"/_matrix/app/v1/users/{AGENT}", headers=AUTH)).status == 200
    assert (await client.get("/_matrix/app/v1/users/@eve:localhost", headers=AUTH)).status == 404
    assert (await client.get("/_matrix/app/v1/rooms/%23x:localhost", headers=AUTH)).status == 404
    assert (await client.post("/_matrix/app/v1/ping", json={}, headers=AUTH)).status == 200
    assert (await client.get(f"/_matrix/app/v1/users/{AGENT}")).status == 401


async def test_invite_and_membership_pick_the_reader(setup) -> None:
    client, sink, _, _ = setup
    room = "!dm:localhost"
    invite = {
        "event_id": "$i",
        "room_id": room,
        "sender": "@bob:localhost",
        "type": "m.room.member",
        "state_key": AGENT,
        "content": {"membership": "invite"},
        "origin_server_ts": 1,
    }
    join = {**invite, "event_id": "$j", "sender": AGENT, "content": {"membership": "join"}}
    events = [invite, join, message(6, room)]
    r = await client.put("/_matrix/app/v1/transactions/t6", json={"events": events}, headers=AUTH)
    assert r.status == 200
    assert sink.invites == [Invite(room, UserId("@bob:localhost"), AGENT)]
    # Until the agent joined, the router reads the room; after, the agent does.
    assert sink.admitted == [(ROUTER, ["$i"]), (AGENT, ["$j", "$e6"])]


async def test_an_invitation_older_than_a_known_join_is_not_joined_again(setup) -> None:
    """Parked at start and read against the joined rooms asked since, the lobby's
    invitations of a thousand agents already in it would make a thousand more joins."""
    client, sink, _, source = setup
    room = "!lobby:localhost"
    source.members.seed(AGENT, [room])
    invite = {
        "event_id": "$i2",
        "room_id": room,
        "sender": ROUTER,
        "type": "m.room.member",
        "state_key": AGENT,
        "content": {"membership": "invite"},
        "origin_server_ts": 1,
    }
    r = await client.put("/_matrix/app/v1/transactions/t8", json={"events": [invite]}, headers=AUTH)
    assert r.status == 200
    assert sink.invites == []
    leave = {**invite, "event_id": "$l2", "sender": AGENT, "content": {"membership": "leave"}}
    again = {**invite, "event_id": "$i3"}
    r = await client.put(
        "/_matrix/app/v1/transactions/t9", json={"events": [leave, again]}, headers=AUTH
    )
    assert r.status == 200
    assert sink.invites == [Invite(room, ROUTER, AGENT)]  # invited after it left: joined


async def test_transactions_pushed_while_starting_are_parked_then_admitted_in_order() -> None:
    """Listening early, a transaction is kept durably and answered at once (held
    unanswered through a long start, Synapse timed out and marked us down), then
    admitted in arrival order when the gateway is ready, before any live one."""
    sink, txns = Sink(), Txns()
    source = AppserviceSource(
        TOKEN, txns, router=ROUTER, owns=lambda u: u == ROUTER, listen=ListenAddress(port=0)
    )
    await source.listen()  # before the gateway is ready: the homeserver finds it up
    try:
        # Answered at once, not held until the start (Synapse gives up after 60 s).
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            url = f"http://127.0.0.1:{source.port}/_matrix/app/v1/transactions/"
            for txn, n in (("2", 2), ("3", 3), ("2", 2)):  # the last: a retry
                body = {"events": [message(n)]}
                async with http.put(url + txn, json=body, headers=AUTH) as r:
                    assert r.status == 200
            assert sink.admitted == [] and source.parked == 2
            assert [p.seq for p in await txns.parked()] == [2, 3]
            await source.start(sink)
            async with http.put(url + "4", json={"events": [message(4)]}, headers=AUTH) as r:
                assert r.status == 200
        assert sink.admitted == [(ROUTER, ["$e2"]), (ROUTER, ["$e3"]), (ROUTER, ["$e4"])]
        assert await txns.parked() == [] and txns.seqs == {2, 3, 4}
    finally:
        await source.stop()


async def test_a_stopping_gateway_parks_what_comes_for_the_next_start() -> None:
    """While the gateway stops (its agents' offline beats go out, seconds), the port
    stays open and transactions are parked: a closed port made Synapse mark the
    appservice down and hold its pushes for its backoff after the restart."""
    sink, txns = Sink(), Txns()
    source = AppserviceSource(
        TOKEN, txns, router=ROUTER, owns=lambda u: u == ROUTER, listen=ListenAddress(port=0)
    )
    await source.start(sink)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            url = f"http://127.0.0.1:{source.port}/_matrix/app/v1/transactions/"
            async with http.put(url + "1", json={"events": [message(1)]}, headers=AUTH) as r:
                assert r.status == 200
            await source.park()
            async with http.put(url + "2", json={"events": [message(2)]}, headers=AUTH) as r:
                assert r.status == 200
        assert sink.admitted == [(ROUTER, ["$e1"])]
        assert [p.seq for p in await txns.parked()] == [2]
    finally:
        await source.stop()
    assert source.status()[0].running is False  # closed at the end
    after = Sink()
    second = AppserviceSource(TOKEN, txns, router=ROUTER, owns=lambda u: u == ROUTER)
    await second.start(after)
    try:
        assert after.admitted == [(ROUTER, ["$e2"])] and await txns.parked() == []
    finally:
        await second.stop()


async def test_parked_transactions_are_admitted_by_the_next_start() -> None:
    """A gateway that parked and died before its start finished: the next one admits."""
    txns = Txns()
    first = AppserviceSource(TOKEN, txns, router=ROUTER, owns=lambda u: u == ROUTER)
    async with TestClient(TestServer(first.app())) as client:
        r = await client.put(
            "/_matrix/app/v1/transactions/9", json={"events": [message(9)]}, headers=AUTH
        )
        assert r.status == 200
    sink = Sink()
    second = AppserviceSource(
        TOKEN, txns, router=ROUTER, owns=lambda u: u == ROUTER, listen=ListenAddress(port=0)
    )
    await second.start(sink)
    try:
        assert sink.admitted == [(ROUTER, ["$e9"])] and await txns.parked() == []
    finally:
        await second.stop()


async def test_a_failed_transaction_changes_no_membership(setup) -> None:
    """The homeserver sends a failed transaction again: its events are read by the
    same identities the second time (the join in it took effect only once admitted)."""
    client, sink, _, source = setup
    room = "!later:localhost"
    join = {
        "event_id": "$j",
        "room_id": room,
        "sender": AGENT,
        "type": "m.room.member",
        "state_key": AGENT,
        "content": {"membership": "join"},
        "origin_server_ts": 1,
    }
    events = [message(7, room), join, message(8, room)]
    sink.fail = True
    r = await client.put("/_matrix/app/v1/transactions/t7", json={"events": events}, headers=AUTH)
    assert r.status == 500
    assert source.members.reader(room) == ROUTER
    sink.fail = False
    r = await client.put("/_matrix/app/v1/transactions/t7", json={"events": events}, headers=AUTH)
    assert r.status == 200
    assert sink.admitted == [(ROUTER, ["$e7"]), (AGENT, ["$j", "$e8"])]
    assert source.members.reader(room) == AGENT


class CatchUpSpy:
    """Records what the source asks of its catch-up."""

    def __init__(self) -> None:
        self.holds = 0
        self.starts = 0
        self.fail = False
        self.until_next = 0

    def hold(self, *, until_next: bool = False) -> None:
        self.holds += 1
        self.until_next += until_next

    def start(self, rooms: object, sink: object) -> None:
        self.starts += 1

    async def pushed(self, raw_events: Sequence[object]) -> None:
        if self.fail:
            raise RuntimeError("database is locked")


async def test_a_refused_transaction_holds_marks_and_its_retry_catches_up(setup) -> None:
    """Synapse keeps some events behind a refused transaction only in memory: a quick
    restart loses them without an outage seen from here, so the retry's success
    starts a catch-up (once), and the marks wait for it."""
    client, sink, _, source = setup
    spy = CatchUpSpy()
    source.catchup = spy  # type: ignore[assignment]
    url = "/_matrix/app/v1/transactions/"
    assert (await client.put(url + "t1", json={"events": [message(1)]}, headers=AUTH)).status == 200
    assert (spy.holds, spy.starts) == (0, 0)
    sink.fail = True
    assert (await client.put(url + "t2", json={"events": [message(2)]}, headers=AUTH)).status == 500
    assert (spy.holds, spy.starts) == (1, 0)
    sink.fail = False
    assert (await client.put(url + "t2", json={"events": [message(2)]}, headers=AUTH)).status == 200
    assert (spy.holds, spy.starts) == (1, 1)
    assert (await client.put(url + "t3", json={"events": [message(3)]}, headers=AUTH)).status == 200
    assert (spy.holds, spy.starts) == (1, 1)


async def test_a_refused_transaction_answered_as_a_repeat_catches_up(setup) -> None:
    """Refused after it was recorded (the marks could not be written): its retry is a
    repeat, answered 200, and starts the catch-up all the same."""
    client, _, _, source = setup
    spy = CatchUpSpy()
    source.catchup = spy  # type: ignore[assignment]
    url = "/_matrix/app/v1/transactions/t1"
    spy.fail = True
    assert (await client.put(url, json={"events": [message(1)]}, headers=AUTH)).status == 500
    spy.fail = False
    assert (await client.put(url, json={"events": [message(1)]}, headers=AUTH)).status == 200
    assert source.repeats == 1
    assert (spy.holds, spy.starts) == (1, 1)


async def _put(client: TestClient, txn: str, n: int) -> None:
    r = await client.put(
        f"/_matrix/app/v1/transactions/{txn}", json={"events": [message(n)]}, headers=AUTH
    )
    assert r.status == 200


async def test_a_transaction_number_that_never_came_starts_a_catch_up(setup) -> None:
    """Synapse can leave a transaction unsent for good at the end of a recovery: the
    next number skips it. The marks wait (held before the later transaction moves
    them), and the rooms are read back."""
    client, _, _, source = setup
    spy = CatchUpSpy()
    source.catchup = spy  # type: ignore[assignment]
    await _put(client, "1", 1)
    await _put(client, "2", 2)
    assert (spy.holds, spy.starts) == (0, 0)
    await _put(client, "4", 4)  # 3 never came
    assert spy.holds == 1
    await asyncio.sleep(0.05)
    assert spy.starts == 1
    await _put(client, "1", 5)  # the homeserver numbered again (a restart): no gap
    await _put(client, "2", 6)
    await asyncio.sleep(0.05)
    assert (spy.holds, spy.starts) == (1, 1)


async def test_a_number_another_gateway_took_is_no_gap(setup) -> None:
    client, _, txns, source = setup
    spy = CatchUpSpy()
    source.catchup = spy  # type: ignore[assignment]
    await _put(client, "10", 1)
    txns.seqs.add(11)  # behind one URL, the other process took it
    await _put(client, "12", 2)
    await asyncio.sleep(0.05)
    assert (spy.holds, spy.starts) == (0, 0)


async def test_catch_ups_started_by_gaps_are_spaced_out(setup) -> None:
    """Other appservices on the homeserver draw from the same numbers: a catch-up per
    gap would read every room again and again, so they are spaced out; gaps noticed
    while one is booked neither book another nor push it later."""
    client, _, _, source = setup
    spy = CatchUpSpy()
    source.catchup = spy  # type: ignore[assignment]
    source._gaps = GapWatch(source._txns, interval_s=2.0)
    await _put(client, "1", 1)
    await _put(client, "3", 3)  # a gap: caught up at once
    await asyncio.sleep(0.05)
    assert spy.starts == 1
    for n in (5, 7, 9):  # more gaps: one catch-up booked, 2 s after the first
        await _put(client, str(n), n)
    await asyncio.sleep(0.1)
    assert spy.starts == 1
    await eventually(lambda: spy.starts == 2, what="the booked catch-up")
    assert spy.holds == spy.until_next == 4  # each gap holds the marks until it runs


async def test_a_run_under_way_does_not_end_the_hold_of_a_booked_catch_up() -> None:
    """A gap noticed while a catch-up runs: that run must not write the marks of the
    transaction after the gap, or the booked one would stop short of what was missed."""
    from salon.matrix.as_catchup import CatchUp

    marks: dict[str, tuple[str, int]] = {"!room:localhost": ("$e1", 1001)}

    class Positions:
        async def room_marks(self, key: object) -> dict[str, tuple[str, int]]:
            return dict(marks)

        async def advance(self, key: object, token: object, new: dict, more: dict) -> None:
            marks.update(new)

    catchup = CatchUp(Positions(), ROUTER)  # type: ignore[arg-type]
    await catchup.run({}, Sink())  # the start's run: marks move freely after it
    catchup.hold(until_next=True)  # a gap, its catch-up booked for later
    await catchup.pushed([message(9)])  # the transaction after the gap
    await catchup.run({}, Sink())  # another run ends meanwhile
    assert catchup.due and marks == {"!room:localhost": ("$e1", 1001)}
    catchup.start({}, Sink())  # the booked one
    await asyncio.sleep(0.05)
    assert not catchup.due and marks == {"!room:localhost": ("$e9", 1009)}


async def test_a_transaction_pushed_while_the_parked_ones_are_admitted_waits_its_turn() -> None:
    """The drain takes the lock per parked transaction: one pushed meanwhile is parked
    behind them and answered at once, and admitted after them, in order."""
    sink, txns = Sink(), Txns()
    park = txns.park
    admitted_when_parked: list[int] = []

    async def parking(txn_id: str, seq: int | None, body: str) -> bool:
        admitted_when_parked.append(len(sink.admitted))
        return await park(txn_id, seq, body)

    source = AppserviceSource(
        TOKEN, txns, router=ROUTER, owns=lambda u: u == ROUTER, listen=ListenAddress(port=0)
    )
    n_parked = 30  # each admission takes 50 ms: the drain lasts 1.5 s
    async with TestClient(TestServer(source.app())) as client:
        for n in range(1, n_parked + 1):
            await _put(client, str(n), n)
        txns.park = parking  # type: ignore[method-assign]
        started = asyncio.create_task(source.start(sink))
        await eventually(lambda: len(sink.admitted) >= 2, timeout=30, what="the drain")
        await asyncio.wait_for(_put(client, "31", 31), 30)
        # Parked and answered while the drain was still under way, not behind it (read
        # from the order of things, not the clock: a loaded machine is slow throughout).
        assert admitted_when_parked and admitted_when_parked[0] < n_parked
        await started
        await _put(client, "32", 32)
    assert [ids for _, ids in sink.admitted] == [[f"$e{n}"] for n in range(1, 33)]
    assert await txns.parked() == []
