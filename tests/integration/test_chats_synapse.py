"""`!new` cut short after the room exists, against a real Synapse: no second room."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from salon.commands.chats import CHAT_MARKER, Chats
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.registration import Credentials
from salon.store import Store


class Crash(Exception):
    """The process dying right after Synapse made the room."""


async def test_new_repeated_after_a_crash_finds_the_room_it_made(
    synapse: Any, new_user: Callable[..., Awaitable[Credentials]], tmp_path: Path
) -> None:
    router_creds, alice, agent = await new_user(), await new_user(), await new_user()
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    async with aiohttp.ClientSession() as session:
        router = MatrixAPI(
            synapse.base_url,
            UserId(router_creds.user_id),
            router_creds.access_token,
            session=session,
        )
        agent_api = MatrixAPI(
            synapse.base_url, UserId(agent.user_id), agent.access_token, session=session
        )
        first = Chats(store, router)
        space_id = await first.personal_space(alice.user_id, "en")
        real_create = router.create_room
        made: list[RoomId] = []

        async def create_then_die(**kwargs: Any) -> RoomId:
            made.append(await real_create(**kwargs))
            raise Crash

        router.create_room = create_then_die  # type: ignore[method-assign]
        with pytest.raises(Crash):
            await first.create(alice.user_id, "echo", agent_api, None, "en", command_event="$n")
        del router.create_room  # back to the real method

        # A new process: fresh objects, the same store, the same command handled again.
        chat = await Chats(store, router).create(
            alice.user_id, "echo", agent_api, None, "en", command_event="$n"
        )
        # The room made before the crash, not a second one; the router left it once
        # it was recorded (it stays in the person's Space only).
        assert chat.room_id == made[0]
        assert set(await router.joined_rooms()) == {space_id}
        assert chat.name == "Chat 1"
        assert chat.room_id in await agent_api.joined_rooms()  # joined before the router left
        marker = await agent_api.get_state_event(chat.room_id, CHAT_MARKER)
        assert marker is not None and marker["command_event"] == "$n"
        parent = await agent_api.get_state_event(chat.room_id, "m.space.parent", space_id)
        assert parent is not None and parent["canonical"] is True
        record = await store.rooms.get(chat.room_id)
        assert record is not None and record.agent_id == "echo" and record.owner == alice.user_id
    await store.close()
