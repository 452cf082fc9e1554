"""Rooms found or created by alias, and who gets invited to them."""

from __future__ import annotations

from typing import cast

from tests.fake_matrix import FakeHomeserver

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
