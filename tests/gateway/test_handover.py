"""At start the router takes over the rooms of agents removed while the gateway was
down (their own room, their `!new` chats), invited by the former agent."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import (
    ALICE,
    CODER,
    CODER_USER,
    ROUTER,
    WRITER,
    WRITER_USER,
    make_config,
    open_store,
)

from salon._exceptions import AuthError
from salon.gateway.handover import take_over_orphans
from salon.gateway.identities import former_agent, log_in_former
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.login import Authenticator
from salon.store.records import RoomKind

HOMESERVER = {"url": "http://127.0.0.1:8008", "server_name": "localhost"}


async def test_the_router_takes_over_the_rooms_of_a_removed_agent(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver("localhost")
    router, coder, writer = hs.api(ROUTER), hs.api(CODER_USER), hs.api(WRITER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder", invite=[ALICE])
    chat = await coder.create_room(invite=[ALICE])  # a `!new` chat the router left
    archived = await coder.create_room(invite=[ALICE])
    writer_room = await writer.create_room(alias_localpart="salon-writer")
    await store.rooms.upsert(coder_room, RoomKind.AGENT, agent_id=CODER, owner=CODER_USER)
    await store.rooms.upsert(chat, RoomKind.CHAT, agent_id=CODER, owner=ALICE)
    await store.rooms.upsert(archived, RoomKind.CHAT, agent_id=CODER, owner=ALICE)
    await store.rooms.archive(archived)
    await store.rooms.upsert(writer_room, RoomKind.AGENT, agent_id=WRITER, owner=WRITER_USER)
    logins: list[tuple[AgentId, UserId | None]] = []

    async def login(agent_id: AgentId, user_id: UserId | None) -> MatrixAPI:
        logins.append((agent_id, user_id))
        return cast(MatrixAPI, hs.api(user_id or ""))

    # The coder is gone; the writer is still hosted.
    taken = await take_over_orphans(cast(MatrixAPI, router), store, {WRITER}, login)

    assert sorted(taken) == sorted([coder_room, chat])
    assert logins == [(CODER, CODER_USER)]  # once per former agent, by its recorded user
    assert hs.room(coder_room).members[ROUTER] == "join"
    assert hs.room(chat).members[ROUTER] == "join"
    assert ROUTER not in hs.room(archived).members
    assert ROUTER not in hs.room(writer_room).members

    # At the next start it is in them already: no login, nothing to take.
    logins.clear()
    assert await take_over_orphans(cast(MatrixAPI, router), store, {WRITER}, login) == []
    assert logins == []
    await store.close()


async def test_a_failed_login_still_takes_what_the_router_can_join(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver("localhost")
    router, coder = hs.api(ROUTER), hs.api(CODER_USER)
    public = await coder.create_room(alias_localpart="salon-coder", preset="public_chat")
    private = await coder.create_room(invite=[ALICE])
    await store.rooms.upsert(public, RoomKind.AGENT, agent_id=CODER)
    await store.rooms.upsert(private, RoomKind.CHAT, agent_id=CODER, owner=ALICE)

    async def login(agent_id: AgentId, user_id: UserId | None) -> MatrixAPI:
        assert user_id is None  # a room recorded by an older version: no owner known
        raise AuthError("no way to log in")

    taken = await take_over_orphans(cast(MatrixAPI, router), store, set(), login)

    assert taken == [public]
    assert ROUTER not in hs.room(private).members  # tried again at the next start
    await store.close()


def test_a_former_agent_is_found_by_its_recorded_user_or_by_naming() -> None:
    config = make_config(homeserver={**HOMESERVER, "registration_shared_secret": "s3cret"})
    recorded = UserId("@custom_gone:localhost")
    assert former_agent(config, AgentId("gone"), recorded).user_id == recorded
    spec = former_agent(config, AgentId("gone"), None)
    assert spec.user_id == "@salon_gone:localhost" and spec.source.shared_secret == "s3cret"


async def test_a_peers_agent_is_no_orphan_and_an_own_room_leaves_the_space(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver("localhost")
    router, coder, writer = hs.api(ROUTER), hs.api(CODER_USER), hs.api(WRITER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder", invite=[WRITER_USER])
    await writer.join(coder_room)  # a visitor from before
    moved = await hs.api("@salon_moved:localhost").create_room(alias_localpart="salon-moved")
    await store.rooms.upsert(coder_room, RoomKind.AGENT, agent_id=CODER, owner=CODER_USER)
    await store.rooms.upsert(
        moved, RoomKind.AGENT, agent_id="moved", owner=UserId("@salon_moved:localhost")
    )
    unlinked: list[str] = []

    async def unlink(room_id: RoomId) -> None:
        unlinked.append(room_id)

    async def login(agent_id: AgentId, user_id: UserId | None) -> MatrixAPI:
        return cast(MatrixAPI, hs.api(user_id or ""))

    # `moved` is hosted by a peer gateway now: its room is that gateway's business.
    taken = await take_over_orphans(
        cast(MatrixAPI, router),
        store,
        {WRITER, "moved"},
        login,
        unlink=unlink,
        visitors={WRITER: cast(MatrixAPI, writer)},
    )
    assert taken == [coder_room] and unlinked == [coder_room]
    assert ROUTER not in hs.room(moved).members
    assert hs.room(coder_room).members[WRITER_USER] == "leave"  # no business there now
    await store.close()


async def test_a_guessed_former_user_is_only_used_with_a_stored_token(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    config = make_config(homeserver={**HOMESERVER, "registration_shared_secret": "s3cret"})
    tried: list[UserId] = []

    class Auth:
        async def login(self, user_id: UserId, source: object) -> MatrixAPI:
            tried.append(user_id)
            return cast(MatrixAPI, FakeHomeserver().api(user_id))

    auth = cast(Authenticator, Auth())
    # Guessed and never logged in here: the shared secret would register a stray user.
    with pytest.raises(AuthError):
        await log_in_former(auth, store.identities, config, AgentId("gone"), None)
    assert tried == []
    await store.identities.save_credentials("@salon_gone:localhost", "DEV", "token")
    await log_in_former(auth, store.identities, config, AgentId("gone"), None)
    recorded = UserId("@custom:localhost")  # recorded: used as it is
    await log_in_former(auth, store.identities, config, AgentId("other"), recorded)
    assert tried == ["@salon_gone:localhost", recorded]
    await store.close()
