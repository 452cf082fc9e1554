"""The hosted agents' registry: one record per agent; its views read through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import make_config, make_roster, open_store

from salon.agents.echo import EchoBackend
from salon.gateway.registry import HostedAgent, HostedAgents, Identities, make_hosted
from salon.ids import AgentId, RoomId, UserId
from salon.store import Store
from salon.turns.voices import room_owner

DATA_DIR = Path("data")
CODER, WRITER = AgentId("coder"), AgentId("writer")
HS = FakeHomeserver()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


def hosted_one(registry: HostedAgents, agent_id: AgentId, room: str, store: Store) -> HostedAgent:
    config = make_config(data_dir=str(DATA_DIR))
    member = registry.roster.member(agent_id)
    entry = make_hosted(
        config, member, (HS.api(member.user_id), RoomId(room)), EchoBackend(), store.sessions, "gw"
    )
    registry.swap(entry)
    return entry


async def test_a_swap_is_seen_through_every_view(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the agents' homes are made under ./data
    hs = HS
    registry = HostedAgents(make_roster())
    apis, rooms, users = registry.apis, registry.rooms, registry.users
    coder = hosted_one(registry, CODER, "!coder:localhost", store)
    writer = hosted_one(registry, WRITER, "!writer:localhost", store)
    assert dict(rooms) == {CODER: "!coder:localhost", WRITER: "!writer:localhost"}
    assert registry.by_user(coder.user_id) is coder
    assert registry.owner_of("!writer:localhost") is writer
    assert registry.room_of(CODER) == "!coder:localhost"
    assert [m.agent_id for m in registry.members] == [CODER, WRITER]  # the roster's order

    # A reload changes the writer: one entry swapped, every view sees it at once.
    moved = replace(writer, room_id=RoomId("!new:localhost"), api=hs.api("@other:localhost"))
    assert registry.swap(moved) is writer
    assert rooms[WRITER] == "!new:localhost"
    assert users[WRITER] == "@other:localhost"
    assert registry.owner_of("!writer:localhost") is None, "the old room's index entry went"
    assert registry.by_user(writer.user_id) is None
    assert apis[WRITER] is moved.api

    # Removed: gone from the registry, its views and the identities by user.
    identities = Identities(hs.api("@salon:localhost"), registry)
    assert UserId(coder.user_id) in identities
    assert registry.remove(CODER) is coder
    assert CODER not in apis and CODER not in registry
    assert UserId(coder.user_id) not in identities
    assert [m.agent_id for m in registry.members] == [WRITER]
    assert list(identities) == ["@salon:localhost", "@other:localhost"]


async def test_whose_room_is_read_from_the_index_not_a_scan(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``room_owner`` is asked several times per message: with the registry's rooms it
    looks the room up, never walking every hosted agent (1,000 at scale)."""
    monkeypatch.chdir(tmp_path)
    registry = HostedAgents(make_roster())
    hosted_one(registry, CODER, "!coder:localhost", store)
    writer = hosted_one(registry, WRITER, "!writer:localhost", store)
    rooms = registry.rooms

    def no_scan(self: object) -> Any:
        raise AssertionError("every agent walked to find a room's owner")

    monkeypatch.setattr(type(rooms), "__iter__", no_scan)
    assert room_owner(rooms, "!writer:localhost") == WRITER
    assert room_owner(rooms, "!coder:localhost") == CODER
    assert room_owner(rooms, "!elsewhere:localhost") is None
    registry.swap(replace(writer, room_id=RoomId("!new:localhost")))
    assert room_owner(rooms, "!writer:localhost") is None
    assert room_owner(rooms, "!new:localhost") == WRITER
    registry.remove(WRITER)
    assert room_owner(rooms, "!new:localhost") is None
    # Any other mapping is still scanned.
    assert room_owner({CODER: RoomId("!c:x")}, "!c:x") == CODER
