"""The fake homeserver behaves as Salon relies on: txn-id dedupe, failures on demand."""

from __future__ import annotations

import pytest
from tests.fake_matrix import FakeHomeserver, FakeMatrixAPI

from salon._exceptions import (
    ForbiddenError,
    MatrixConnectionError,
    MatrixRequestError,
    NotFoundError,
    RoomInUseError,
)
from salon.ids import RoomAlias, RoomId, UserId
from salon.matrix.api import MatrixAPI

ALICE = UserId("@alice:localhost")


@pytest.fixture
def hs() -> FakeHomeserver:
    return FakeHomeserver()


async def _shared_room(hs: FakeHomeserver) -> tuple[FakeMatrixAPI, FakeMatrixAPI, RoomId]:
    router, alice = hs.api("@salon:localhost"), hs.api(ALICE)
    room = await router.create_room(name="Room", invite=[ALICE])
    await alice.join(room)
    return router, alice, room


async def test_same_txn_id_is_one_event_per_device(hs: FakeHomeserver) -> None:
    router, _, room = await _shared_room(hs)
    first = await router.send_event(room, "m.room.message", {"body": "a"}, txn_id="t1")
    again = await router.send_event(room, "m.room.message", {"body": "a"}, txn_id="t1")
    other = await router.send_event(room, "m.room.message", {"body": "b"}, txn_id="t2")
    assert first == again != other
    assert [e["content"]["body"] for e in hs.messages_in(room)] == ["a", "b"]
    # A re-login is a new device: Synapse does not dedupe across devices.
    relogged = hs.api("@salon:localhost", device_id="OTHER")
    assert await relogged.send_event(room, "m.room.message", {"body": "a"}, txn_id="t1") != first
    assert len(hs.messages_in(room)) == 3


async def test_identities_share_the_homeserver(hs: FakeHomeserver) -> None:
    router, alice, room = await _shared_room(hs)
    assert isinstance(alice, MatrixAPI)
    assert set(await router.joined_members(room)) == {"@salon:localhost", ALICE}
    assert await alice.joined_rooms() == [room]
    await alice.send_event(room, "m.room.message", {"body": "hi"}, txn_id="x")
    assert hs.messages_in(room)[0]["sender"] == ALICE
    stranger = hs.api("@eve:localhost")
    with pytest.raises(ForbiddenError):
        await stranger.join(room)  # private room, no invitation
    with pytest.raises(ForbiddenError):
        await stranger.send_event(room, "m.room.message", {"body": "x"}, txn_id="x")


async def test_state_aliases_and_paging(hs: FakeHomeserver) -> None:
    router = hs.api("@salon:localhost")
    room = await router.create_room(
        alias_localpart="lobby",
        initial_state=[{"type": "com.example", "state_key": "", "content": {"n": 1}}],
        preset="public_chat",
    )
    assert await router.resolve_alias(RoomAlias("#lobby:localhost")) == (room, ["localhost"])
    with pytest.raises(RoomInUseError):
        await router.create_room(alias_localpart="lobby")
    with pytest.raises(NotFoundError):
        await router.resolve_alias(RoomAlias("#nope:localhost"))
    assert await router.get_state_event(room, "com.example") == {"n": 1}
    assert await router.get_state_event(room, "com.missing") is None
    await hs.api(ALICE).join(RoomAlias("#lobby:localhost"))  # public: no invitation needed
    for n in range(5):
        await router.send_event(room, "m.room.message", {"body": str(n)}, txn_id=str(n))
    page = await router.messages(room, limit=3)
    assert [e["content"]["body"] for e in page["chunk"]] == ["4", "3", "2"]
    rest = await router.messages(room, limit=100, since=page["end"])
    assert [e["content"].get("body") for e in rest["chunk"]][:2] == ["1", "0"]
    assert "end" not in rest  # the beginning of the room


async def test_fail_raises_the_given_error_the_given_number_of_times(hs: FakeHomeserver) -> None:
    router, _, room = await _shared_room(hs)
    router.fail("send_event", MatrixRequestError("boom", http_status=502), times=2)
    for _ in range(2):
        with pytest.raises(MatrixRequestError, match="boom"):
            await router.send_event(room, "m.room.message", {"body": "a"}, txn_id="t1")
    assert hs.messages_in(room) == []  # failed before the homeserver did anything
    await router.send_event(room, "m.room.message", {"body": "a"}, txn_id="t1")
    assert len(hs.messages_in(room)) == 1
    assert [c["txn_id"] for c in router.calls_to("send_event")] == ["t1", "t1", "t1"]


async def test_failure_after_effect_then_retry_is_deduplicated(hs: FakeHomeserver) -> None:
    router, _, room = await _shared_room(hs)
    router.fail("send_event", MatrixConnectionError("lost"), after_effect=True)
    with pytest.raises(MatrixConnectionError):
        await router.send_event(room, "m.room.message", {"body": "a"}, txn_id="t1")
    assert len(hs.messages_in(room)) == 1  # the homeserver did it; the answer was lost
    event_id = await router.send_event(room, "m.room.message", {"body": "a"}, txn_id="t1")
    assert [e["event_id"] for e in hs.messages_in(room)] == [event_id]


async def test_down_homeserver_fails_every_call_of_every_identity(hs: FakeHomeserver) -> None:
    router, alice, room = await _shared_room(hs)
    hs.down = True
    for call in (
        router.whoami(),
        alice.send_event(room, "m.room.message", {}, txn_id="t"),
        router.set_typing(room, True),
        alice.joined_rooms(),
    ):
        with pytest.raises(MatrixConnectionError):
            await call
    hs.down = False
    assert await router.whoami() == "@salon:localhost"
    assert ("whoami", {}) in router.calls
