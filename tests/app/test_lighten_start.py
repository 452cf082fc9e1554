"""Appservice mode: start-up work paced behind the replies, known joins not repeated."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.helpers import open_store

from salon.app.modes import lighten_start
from salon.gateway.invites import InviteJoiner
from salon.ids import RoomId, UserId
from salon.matrix.appservice import AppserviceSource
from salon.matrix.as_catchup import CatchUp

ROUTER = UserId("@salon:localhost")
AGENT = UserId("@salon_echo:localhost")


class Txns:
    async def seen(self, txn_id: str) -> bool:
        return False

    async def record(self, txn_id: str) -> None: ...


async def test_the_listener_tells_the_joiner_who_is_in_and_the_catch_up_is_paced(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path)
    try:
        source = AppserviceSource("t", Txns(), router=ROUTER, owns=lambda u: u in (ROUTER, AGENT))
        source.catchup = CatchUp(store.identities, ROUTER)
        source.members.seed(AGENT, ["!lobby:localhost"])
        invites = InviteJoiner(store, {}, allowed=lambda _: True)
        lighten_start(source, invites, lambda: False)
        assert invites.already_in is not None
        assert invites.already_in(AGENT, RoomId("!lobby:localhost"))
        assert not invites.already_in(AGENT, RoomId("!other:localhost"))
        assert not invites.already_in(ROUTER, RoomId("!lobby:localhost"))
        assert source.catchup.door is not None
    finally:
        await store.close()
