"""What every message reads of its sender and room comes in one store read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from salon.store import Store
from salon.store.records import RoomKind


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_sender_and_room_in_one_read_match_the_single_reads(store: Store) -> None:
    user, room = await store.users.get_with_room("@ann:x", "!r:x")
    assert user == await store.users.get("@ann:x") and room is None

    await store.users.set_locale("@ann:x", "fr")
    await store.users.select_agent("@ann:x", "coder")
    await store.rooms.upsert("!r:x", RoomKind.CHAT, agent_id="coder", owner="@ann:x", name="n")
    user, room = await store.users.get_with_room("@ann:x", "!r:x")
    assert user == await store.users.get("@ann:x")
    assert user.locale == "fr" and user.selected_agent == "coder"
    assert room == await store.rooms.get("!r:x") and room is not None
    assert room.kind is RoomKind.CHAT and room.owner == "@ann:x" and not room.archived

    # A known room, an unknown sender; and the other way round.
    user, room = await store.users.get_with_room("@bob:x", "!r:x")
    assert user == await store.users.get("@bob:x") and room is not None
    user, room = await store.users.get_with_room("@ann:x", "!other:x")
    assert user.locale == "fr" and room is None
