"""Rooms found or created by alias, and who gets invited to them."""

from __future__ import annotations

from typing import cast

import pytest
from tests.fake_matrix import FakeHomeserver

from salon._exceptions import ForbiddenError, MatrixRequestError
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.space import RoomSpec, SpaceManager

OWNER = UserId("@salon_coder:localhost")
VISITOR = UserId("@salon_writer:localhost")
PERSON = UserId("@alice:localhost")


async def test_a_second_ensure_invites_nobody_already_invited_or_joined() -> None:
    hs = FakeHomeserver("localhost")
    owner, person = hs.api(OWNER), hs.api(PERSON)
    spaces = SpaceManager(cast(MatrixAPI, owner), cache_ttl_s=0)
    spec = RoomSpec(alias_localpart="salon-coder", name="Coder", invite=[VISITOR, PERSON])

    room = await spaces.ensure_room(spec)
    await person.join(room)
    invites = len(owner.calls_to("invite"))
    # The next start: the visitor is still only invited, the person joined.
    assert await spaces.ensure_room(spec) == room
    assert len(owner.calls_to("invite")) == invites
    assert hs.room(room).members == {OWNER: "join", VISITOR: "invite", PERSON: "join"}


async def test_a_room_whose_creator_has_not_joined_yet_is_joined_once_it_has() -> None:
    # Synapse names the alias before the creator's join: a second starter resolving it in
    # that moment is refused with 404 "no servers that are in the room".
    hs = FakeHomeserver("localhost")
    owner, other = hs.api(OWNER), hs.api(VISITOR)
    room = await owner.create_room(alias_localpart="salon", preset="public_chat")
    no_servers = MatrixRequestError(
        "join: M_UNKNOWN: Can't join remote room because no servers that are in the room "
        "have been provided.",
        http_status=404,
        errcode="M_UNKNOWN",
    )
    other.fail("join", no_servers, times=2)

    assert (
        await SpaceManager(cast(MatrixAPI, other)).ensure_room(
            RoomSpec(alias_localpart="salon", name="Salon")
        )
        == room
    )
    assert len(other.calls_to("join")) == 3
    assert hs.room(room).members[VISITOR] == "join"


async def test_a_join_refused_for_another_reason_is_not_retried() -> None:
    hs = FakeHomeserver("localhost")
    owner, other = hs.api(OWNER), hs.api(VISITOR)
    await owner.create_room(alias_localpart="salon")  # invite-only: the join is refused
    with pytest.raises(ForbiddenError):
        await SpaceManager(cast(MatrixAPI, other)).ensure_room(
            RoomSpec(alias_localpart="salon", name="Salon")
        )
    assert len(other.calls_to("join")) == 1
