"""`encryption.rooms`: a `!new` chat is created encrypted (the default) and its agent
answers there, read by an encrypting person (matrix-nio)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salon.app.gateway import Gateway

from .conftest import salon_config
from .nio_person import NioPerson


async def test_a_new_chat_is_encrypted_and_the_agent_answers_in_it(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
) -> None:
    config = salon_config(synapse, tmp_path, sync={"timeout_ms": 1000})
    client = nio_person.client
    gateway = await gateways(config, invite=[client.user_id])
    assert gateway.state is not None
    router = gateway.state.router.user_id
    echo = str(config.agent_user_id("echo", synapse.server_name))
    lobby = str(gateway.state.topology.lobby_id)
    await client.join(lobby)
    await nio_person.until(lambda: lobby in client.rooms, "the lobby")

    def link() -> str | None:
        for event in nio_person.replies_from(router):
            found = re.search(r"https://matrix\.to/#/(![^\s)]+)", event.body)
            if found:
                return found.group(1)
        return None

    await nio_person.say(lobby, "!agent echo")
    await nio_person.say(lobby, "!new")
    await nio_person.until(lambda: link() is not None, "the link to the new chat")
    chat = link()
    assert chat is not None
    await client.join(chat)

    def ready() -> bool:
        room = client.rooms.get(chat)
        return room is not None and room.encrypted and echo in room.users

    await nio_person.until(ready, "the encrypted chat with the agent in it")
    await nio_person.say(chat, "a secret for the new chat")
    await nio_person.until(
        lambda: any(
            "a secret for the new chat" in e.body
            for e in nio_person.replies_from(echo)
            if e.source.get("room_id", chat) == chat
        ),
        "the agent's answer in the encrypted chat",
    )
    answer = next(e for e in nio_person.replies_from(echo) if "a secret" in e.body)
    assert answer.decrypted  # sent encrypted, opened by the person's client
