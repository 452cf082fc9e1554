"""`encryption.rooms`: which rooms Salon creates itself are created encrypted."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import (
    CODER,
    CODER_USER,
    ROUTER,
    WRITER,
    WRITER_USER,
    make_config,
    open_store,
)

from salon.config.models import EncryptionConfig
from salon.gateway.bootstrap import bootstrap
from salon.matrix.space import SpaceManager

ENCRYPTION = ("m.room.encryption", "")


@pytest.mark.parametrize(
    ("rooms", "enabled", "chat", "shared"),
    [
        ("new", True, True, False),
        ("all", True, True, True),
        ("none", True, False, False),
        ("all", False, False, False),  # encryption off: never an encrypted room
    ],
)
def test_which_rooms_are_created_encrypted(
    rooms: str, enabled: bool, chat: bool, shared: bool
) -> None:
    config = EncryptionConfig.model_validate({"rooms": rooms, "enabled": enabled})
    assert (config.encrypts("chat"), config.encrypts("shared")) == (chat, shared)


def test_the_default_encrypts_new_chats_only() -> None:
    assert EncryptionConfig().rooms == "new"


@pytest.mark.parametrize("rooms", ["new", "all"])
async def test_bootstrap_creates_lobby_and_agent_rooms_by_the_setting(
    tmp_path: Path, rooms: str
) -> None:
    hs = FakeHomeserver()
    config = make_config(encryption={"rooms": rooms})
    store = await open_store(tmp_path)
    try:
        agents = {CODER: hs.api(CODER_USER), WRITER: hs.api(WRITER_USER)}
        topology = await bootstrap(config, SpaceManager(hs.api(ROUTER)), agents, store, [])
    finally:
        await store.close()
    shared = [topology.lobby_id, *topology.agent_rooms.values()]
    encrypted = {r: ENCRYPTION in hs.room(r).state for r in shared}
    assert encrypted == dict.fromkeys(shared, rooms == "all")
    assert topology.space_id is not None
    assert ENCRYPTION not in hs.room(topology.space_id).state  # a Space never is
    if rooms == "all":
        content = hs.room(topology.lobby_id).state[ENCRYPTION]["content"]
        assert content == {"algorithm": "m.megolm.v1.aes-sha2"}
