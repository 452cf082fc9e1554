"""At start the router takes over the rooms of agents removed while the gateway was
down (their own room, their `!new` chats), invited by the former agent."""

from __future__ import annotations

from pathlib import Path
from typing import cast

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
from salon.gateway.identities import former_agent
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
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
