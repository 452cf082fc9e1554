"""`!new` makes one room per command, even when handling it is cut short and repeated.

The dispatcher handles an inbox row again after a crash, so every test here
interrupts the first run somewhere and handles the same command event again.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.commands.harness import ALICE, Harness

from salon import responses
from salon._exceptions import MatrixConnectionError, StoreError
from salon.commands.chats import CHAT_MARKER
from salon.store.records import RoomKind


class Crash(Exception):
    """The process dying at this point (nothing after it runs)."""


def _chat_rooms(h: Harness) -> list[str]:
    """Rooms the router made that are not Spaces (created ones, recorded or not)."""
    return [
        room_id
        for room_id, room in h.hs.rooms.items()
        if room.state[("m.room.create", "")]["sender"] == h.router.user_id
        and room.state[("m.room.create", "")]["content"].get("type") != "m.space"
    ]


async def _ready(h: Harness) -> str:
    room = await h.shared_room()
    await h.ask(room, "!agent coder")
    await h.handlers.chats.personal_space(ALICE, "en")
    return room


async def _after_crash(h: Harness, room: str, event_id: str) -> list[str]:
    """Handle the command again, as the dispatcher does after a restart."""
    answers = await h.ask(room, "!new", event_id=event_id)
    [chat] = await h.store.rooms.chats_of(ALICE)
    assert _chat_rooms(h) == [chat.room_id]
    assert chat.name == "Chat 1"
    link = f"https://matrix.to/#/{chat.room_id}"
    assert answers == [responses.text("new_created", name="Chat 1", link=link, label="Coder")]
    return answers


async def test_room_made_but_answer_lost(h: Harness) -> None:
    room = await _ready(h)
    h.router.fail("create_room", MatrixConnectionError("lost"), after_effect=True)
    with pytest.raises(MatrixConnectionError):  # the inbox keeps it pending, runs it again
        await h.ask(room, "!new", event_id="$new1")
    assert len(_chat_rooms(h)) == 1  # the homeserver made it; nobody recorded it

    await _after_crash(h, room, "$new1")
    [chat] = _chat_rooms(h)
    marker = h.hs.room(chat).state[(CHAT_MARKER, "")]["content"]
    assert marker["command_event"] == "$new1"


async def test_crash_before_the_binding(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    room = await _ready(h)
    upsert = h.store.rooms.upsert

    async def crash_once(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(h.store.rooms, "upsert", upsert)
        raise StoreError("disk full")

    monkeypatch.setattr(h.store.rooms, "upsert", crash_once)
    with pytest.raises(StoreError):
        await h.ask(room, "!new", event_id="$new1")
    assert await h.store.rooms.chats_of(ALICE) == []

    await _after_crash(h, room, "$new1")


async def test_crash_after_the_answer(h: Harness) -> None:
    """Handled to the end but not marked done: the repeat answers again, same room."""
    room = await _ready(h)
    first = await h.ask(room, "!new", event_id="$new1")
    assert await _after_crash(h, room, "$new1") == first


async def test_crash_while_making_the_space(h: Harness) -> None:
    room = await h.shared_room()
    await h.ask(room, "!agent coder")
    h.router.fail("create_room", MatrixConnectionError("lost"), after_effect=True)
    with pytest.raises(MatrixConnectionError):
        await h.ask(room, "!new", event_id="$new1")

    await _after_crash(h, room, "$new1")
    spaces = [
        r
        for r in h.hs.rooms.values()
        if r.state[("m.room.create", "")]["content"].get("type") == "m.space"
    ]
    user = await h.store.users.get(ALICE)
    assert [s.room_id for s in spaces] == [user.space_id]
    space = await h.store.rooms.get(spaces[0].room_id)
    assert space is not None and space.kind is RoomKind.SPACE


async def test_another_command_makes_another_room(h: Harness) -> None:
    room = await _ready(h)
    h.router.fail("create_room", MatrixConnectionError("lost"), after_effect=True)
    with pytest.raises(MatrixConnectionError):
        await h.ask(room, "!new", event_id="$new1")
    # A different `!new` is not the lost one: it gets a room of its own.
    await h.ask(room, "!new", event_id="$new2")
    await h.ask(room, "!new", event_id="$new1")
    chats = await h.store.rooms.chats_of(ALICE)
    assert sorted(c.name or "" for c in chats) == ["Chat 1", "Chat 2"]
    assert len(_chat_rooms(h)) == 2


@pytest.mark.parametrize("encrypted", [True, False])
async def test_a_new_chat_is_created_encrypted_when_asked(h: Harness, encrypted: bool) -> None:
    room = await _ready(h)
    h.handlers.chats.encrypted = encrypted
    await h.ask(room, "!new", event_id="$new1")
    [chat] = await h.store.rooms.chats_of(ALICE)
    state = h.hs.room(chat.room_id).state
    assert (("m.room.encryption", "") in state) is encrypted
    if encrypted:
        assert state[("m.room.encryption", "")]["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
