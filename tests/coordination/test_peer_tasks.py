"""A peer's agent (another gateway's) may task only the agents ``peers.<id>.may_task`` lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import (
    CODER_USER,
    WRITER_USER,
    event,
    make_config,
    make_roster,
    now_ms,
    open_store,
    sample,
)

from salon.coordination.directory import Directory
from salon.coordination.inbound import InboundDelegations
from salon.coordination.protocol import REQUEST, STATUS, DelegationRequest, new_request
from salon.coordination.protocol import request_content as wire_request
from salon.ids import RoomId, UserId
from salon.store import Store
from salon.store.delegations import DelegationDirection

SCOUT_USER = UserId("@salon_scout:other.example.org")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


async def _ask(store: Store, may_task: list[str] | None, sender: UserId, frm: str) -> Any:
    """The writer (hosted here) asked by ``frm``; what became of it, statuses, submitted."""
    peer: dict[str, Any] = {"user_id": str(SCOUT_USER)}
    if may_task is not None:
        peer["may_task"] = may_task
    config = make_config(peers={"scout": peer})
    hs = FakeHomeserver()
    writer = hs.api(WRITER_USER)
    room = await writer.create_room(alias_localpart="salon-writer", invite=[str(sender)])
    asker = hs.api(sender)
    await asker.join(room)
    directory = Directory(
        roster=make_roster(config),
        apis={"coder": hs.api(CODER_USER), "writer": writer},
        rooms={"writer": room},
    )
    submitted: list[DelegationRequest] = []

    async def submit(request: DelegationRequest, _room: RoomId) -> None:
        submitted.append(request)

    inbound = InboundDelegations(store, directory, hop_limit=3, submit=submit, peers=config.peers)
    request = new_request(frm, "writer", "find papers", deadline_ts=now_ms() + 60_000)
    incoming = event(
        room,
        sender,
        event_type=REQUEST,
        content=wire_request(request),
        received_by=WRITER_USER,
    )
    what = await inbound.on_request(incoming)
    statuses = [e["content"] for _, e in hs.room(room).timeline if e["type"] == STATUS]
    stored = await store.delegations.get(request.id, direction=DelegationDirection.IN)
    return what, statuses, submitted, stored


@pytest.mark.parametrize("may_task", [None, [], ["coder"]], ids=["default", "empty", "other"])
async def test_a_peer_may_not_task_an_agent_it_is_not_allowed_to(
    store: Store, may_task: list[str] | None
) -> None:
    before = sample("salon_delegations_rejected_total", reason="peer_not_allowed")
    what, statuses, submitted, stored = await _ask(store, may_task, SCOUT_USER, "scout")
    assert what == "rejected"
    [status] = statuses
    assert status["state"] == "rejected"
    assert status["error"] == (
        "scout is an agent of another gateway and may not task writer here"
        " (not in peers.scout.may_task)"
    )
    assert sample("salon_delegations_rejected_total", reason="peer_not_allowed") == before + 1
    assert submitted == [] and stored is None  # no task turn, nothing recorded


@pytest.mark.parametrize("may_task", [["writer"], ["*"]])
async def test_a_peer_may_task_the_agents_it_is_allowed_to(
    store: Store, may_task: list[str]
) -> None:
    what, statuses, submitted, stored = await _ask(store, may_task, SCOUT_USER, "scout")
    assert what == "accepted"
    assert [s["state"] for s in statuses] == ["accepted"]
    assert len(submitted) == 1 and stored is not None


async def test_our_own_agents_need_no_peer_entry(store: Store) -> None:
    before = sample("salon_delegations_rejected_total", reason="peer_not_allowed")
    what, _, submitted, _ = await _ask(store, None, CODER_USER, "coder")
    assert what == "accepted" and len(submitted) == 1
    assert sample("salon_delegations_rejected_total", reason="peer_not_allowed") == before
