"""Work references on the path of a delegation (fake homeserver, real SQLite store):
the request event, both store rows, the resend after a crash, the notice, `salon status`."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.fake_matrix import JSON, FakeHomeserver
from tests.gateway.helpers import (
    ALICE,
    CODER_USER,
    WRITER_USER,
    event,
    make_roster,
    now_ms,
    open_store,
)

from salon.cli.status import merge_delegations, read_status
from salon.coordination.delegation import DelegationManager
from salon.coordination.directory import Directory
from salon.coordination.heartbeat import AGENT_STATE
from salon.coordination.inbound import InboundDelegations
from salon.coordination.protocol import REQUEST, DelegationRequest, parse_request
from salon.coordination.records import record_of, request_of
from salon.ids import RoomId
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationPhase

TASK = (
    "Review group/project#12 and https://github.com/owner/repo/pull/34 "
    "(not #salon-writer:localhost, not C#, not #fff)"
)
LABELS = ["group/project#12", "owner/repo#34"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


class World:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.hs = FakeHomeserver()
        self.alice = self.hs.api(ALICE)
        self.coder = self.hs.api(CODER_USER)
        self.writer = self.hs.api(WRITER_USER)

    async def setup(self) -> World:
        self.origin = await self.alice.create_room(invite=[CODER_USER])
        await self.coder.join(self.origin)
        self.writer_room = await self.writer.create_room(
            alias_localpart="salon-writer", invite=[CODER_USER]
        )
        online = {"v": 1, "status": "online", "heartbeat_ts": now_ms(), "ttl_s": 300}
        await self.writer.send_state(self.writer_room, AGENT_STATE, online, WRITER_USER)
        self.directory = Directory(
            roster=make_roster(),
            apis={"coder": self.coder, "writer": self.writer},
            rooms={"writer": self.writer_room},
        )
        return self

    def manager(self, locale: str = "en") -> DelegationManager:
        return DelegationManager(
            self.store,
            self.directory,
            can_delegate_to={"coder": ["writer"]},
            descriptions={},
            deadline_s=60,
            locale=locale,
        )

    def events(self, room: RoomId, event_type: str) -> list[JSON]:
        return [e for _, e in self.hs.room(room).timeline if e["type"] == event_type]

    def notices(self) -> list[str]:
        return [
            e["content"]["body"]
            for e in self.events(self.origin, "m.room.message")
            if e["content"].get("msgtype") == "m.notice"
        ]


@pytest.fixture
async def world(store: Store) -> World:
    return await World(store).setup()


async def _submit(request: DelegationRequest, room: RoomId) -> None:
    return None


async def test_refs_travel_with_the_request_and_are_stored_on_both_sides(
    world: World, tmp_path: Path
) -> None:
    manager = world.manager()
    sent = await manager.delegate("coder", "writer", TASK, origin_room=world.origin, wait=False)
    assert sent.ok

    # The request event carries the parsed refs.
    (request_event,) = world.events(world.writer_room, REQUEST)
    refs = request_event["content"]["refs"]
    assert [(r["kind"], r.get("project"), r["number"], r.get("forge")) for r in refs] == [
        ("issue", "group/project", 12, None),
        ("merge_request", "owner/repo", 34, "github"),
    ]
    assert refs[1]["url"] == "https://github.com/owner/repo/pull/34"

    # The delegator's row keeps them, and a resend (after a crash) sends them again.
    out = await world.store.delegations.get(sent.text)
    assert out is not None and [r["text"] for r in out.refs] == [
        "group/project#12",
        "https://github.com/owner/repo/pull/34",
    ]
    assert request_of(out) == parse_request(request_event["content"])

    # The asked side validates and stores them too.
    inbound = InboundDelegations(world.store, world.directory, hop_limit=3, submit=_submit)
    received = event(
        world.writer_room,
        CODER_USER,
        event_id=request_event["event_id"],
        event_type=REQUEST,
        content=request_event["content"],
        received_by=WRITER_USER,
    )
    assert await inbound.on_request(received) == "accepted"
    inn = await world.store.delegations.get(sent.text, direction=DelegationDirection.IN)
    assert inn is not None and inn.refs == out.refs

    # The notice in the origin room lists them.
    (notice,) = [n for n in world.notices() if "coder → writer" in n]
    assert notice.endswith("(refs: group/project#12, owner/repo#34)"), notice

    # `salon status` shows them on the delegation's one line.
    report = read_status(tmp_path / "s.db")
    (row,) = [d for d in report.delegations if d.id == sent.text]
    assert list(row.refs) == LABELS


async def test_a_task_without_refs_sends_none_and_says_none(world: World) -> None:
    manager = world.manager()
    sent = await manager.delegate(
        "coder",
        "writer",
        "say hi to #salon-writer:localhost in C#",
        origin_room=world.origin,
        wait=False,
    )
    (request_event,) = world.events(world.writer_room, REQUEST)
    assert "refs" not in request_event["content"]
    record = await world.store.delegations.get(sent.text)
    assert record is not None and record.refs == ()
    (notice,) = world.notices()
    assert "refs" not in notice and notice.endswith("say hi to #salon-writer:localhost in C#")


async def test_many_refs_are_listed_short_and_in_the_room_language(world: World) -> None:
    task = " ".join(f"!{n}" for n in range(1, 9))
    await world.manager(locale="ru").delegate(
        "coder", "writer", task, origin_room=world.origin, wait=False
    )
    (notice,) = world.notices()
    assert notice.endswith("(ссылки: !1, !2, !3, !4, !5 и ещё 3)"), notice
    (request_event,) = world.events(world.writer_room, REQUEST)
    assert len(request_event["content"]["refs"]) == 8


async def test_stored_refs_that_no_longer_validate_do_not_block_a_resend(
    world: World, store: Store
) -> None:
    request = parse_request(
        {
            "v": 1,
            "id": "dlg_old",
            "from": "coder",
            "to": "writer",
            "task": "see #1",
            "root": "dlg_old",
            "chain": ["coder", "writer"],
            "hop": 1,
            "deadline_ts": now_ms() + 60_000,
            "refs": [{"kind": "issue", "number": 1, "text": "#1"}],
        }
    )
    assert request is not None
    record = record_of(request, DelegationDirection.OUT, world.writer_room)
    bad: dict[str, Any] = {"kind": "epic", "number": 1, "text": "&1"}
    await store.delegations.create(replace(record, refs=(*record.refs, bad)))
    stored = await store.delegations.get("dlg_old")
    assert stored is not None and len(stored.refs) == 2
    resent = request_of(stored)
    assert resent.refs is not None and [r.label for r in resent.refs] == ["#1"]
    # A pending one is resent at start with what is valid.
    assert stored.state is DelegationPhase.PENDING
    await world.coder.join(world.writer_room)
    await world.manager().recover()
    (request_event,) = world.events(world.writer_room, REQUEST)
    assert request_event["content"]["refs"] == [{"kind": "issue", "number": 1, "text": "#1"}]


async def test_status_reads_a_store_from_before_refs(store: Store, tmp_path: Path) -> None:
    request = parse_request(
        {
            "v": 1,
            "id": "dlg_x",
            "from": "coder",
            "to": "writer",
            "task": "t",
            "root": "dlg_x",
            "chain": ["coder", "writer"],
            "hop": 1,
            "deadline_ts": now_ms() + 60_000,
        }
    )
    assert request is not None
    await store.delegations.create(record_of(request, DelegationDirection.OUT, "!w:localhost"))
    await store.close()
    # As if no gateway had migrated this store to 0008 yet.
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("ALTER TABLE delegations DROP COLUMN refs")
    report = read_status(tmp_path / "s.db")
    assert [(d.id, d.refs) for d in report.delegations] == [("dlg_x", ())]


def test_status_merges_refs_from_the_delegators_row_and_tolerates_garbage() -> None:
    now = now_ms()
    base = {"from_agent": "a", "to_agent": "b", "created_at": now}
    rows = [
        {**base, "id": "d1", "direction": "in", "state": "accepted", "refs": None},
        {
            **base,
            "id": "d1",
            "direction": "out",
            "state": "sent",
            "refs": '[{"kind": "issue", "number": 1, "text": "#1"}, {"kind": "x"}]',
        },
        {**base, "id": "d2", "direction": "out", "state": "sent", "refs": "not json"},
        {**base, "id": "d3", "direction": "out", "state": "sent", "refs": '{"kind": "issue"}'},
        {**base, "id": "d4", "direction": "out", "state": "sent"},
    ]
    merged = {d.id: d.refs for d in merge_delegations(rows, now)}
    assert merged == {"d1": ("#1",), "d2": (), "d3": (), "d4": ()}
