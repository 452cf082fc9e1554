"""The appservice transaction endpoint, with a fake sink and transaction log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from salon.ids import UserId
from salon.matrix.appservice import AppserviceSource, ListenAddress, txn_key
from salon.matrix.events import InboundEvent, Invite

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

    async def seen(self, txn_id: str) -> bool:
        return txn_id in self.ids

    async def record(self, txn_id: str) -> None:
        self.ids.add(txn_id)


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


async def test_listening_early_holds_transactions_until_started() -> None:
    sink, txns = Sink(), Txns()
    source = AppserviceSource(
        TOKEN,
        txns,
        router=ROUTER,
        owns=lambda u: u == ROUTER,
        listen=ListenAddress(port=0),
    )
    await source.listen()  # before the gateway is ready: the homeserver finds it up
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{source.port}/_matrix/app/v1/transactions/t1"
            put = asyncio.create_task(http.put(url, json={"events": [message(1)]}, headers=AUTH))
            await asyncio.sleep(0.3)
            assert not put.done() and sink.admitted == []  # held, not refused, not lost
            await source.start(sink)
            response = await asyncio.wait_for(put, 10)
            assert response.status == 200
        assert sink.admitted == [(ROUTER, ["$e1"])]
    finally:
        await source.stop()


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

    def hold(self) -> None:
        self.holds += 1

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
