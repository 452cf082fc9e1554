"""An agent whose account was let go from memory (``encryption.resident_accounts``)
reads it back from the store when a room key comes: it still opens the person's
message in an encrypted DM and answers encrypted (appservice mode, matrix-nio as
the person)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.ids import AgentId
from salon.matrix.crypto import DeviceCrypto

from ..conftest import TestHomeserver
from .modes import SECRETS
from .nio_person import NioPerson, open_dm
from .test_encrypted_appservice import as_person, as_setup

__all__ = ["as_person", "as_setup"]  # the fixtures, used here


def _crypto(gateway: Gateway, agent: str) -> DeviceCrypto:
    assert gateway.state is not None
    crypto = gateway.state.agent_apis[AgentId(agent)].crypto
    assert isinstance(crypto, DeviceCrypto)
    return crypto


async def test_an_agent_whose_account_was_let_go_reads_and_answers_encrypted(
    as_setup: tuple[TestHomeserver, SalonConfig],
    gateways: Callable[..., Awaitable[Gateway]],
    as_person: NioPerson,
) -> None:
    hs, config = as_setup
    one = config.encryption.model_copy(update={"resident_accounts": 1})
    gateway = await gateways(config.model_copy(update={"encryption": one}), secrets=SECRETS)
    echo = str(config.agent_user_id("echo", hs.server_name))
    crypto = _crypto(gateway, "echo")
    # One account in memory for all the identities: the router's or echo's.
    assert len(crypto.settings.resident) == 1
    assert crypto.evict()
    assert not crypto.me.resident

    room_id = await open_dm(as_person, echo)
    await as_person.say(room_id, "do you still have your keys?")
    await as_person.until(
        lambda: any("do you still have" in e.body for e in as_person.replies_from(echo)),
        "a reply from the agent whose account was let go",
    )
    reply = next(e for e in as_person.replies_from(echo) if "do you still have" in e.body)
    assert reply.decrypted  # it came encrypted, and nio opened it
    # The room key came over Olm on one of the one-time keys it had published: its
    # account was read back from the store for it.
    assert crypto.me.resident
    assert crypto.failures == 0

    # Let go again: the next message (same room key) is read and answered without it.
    assert crypto.evict()
    await as_person.say(room_id, "and now?")
    await as_person.until(
        lambda: any("and now?" in e.body for e in as_person.replies_from(echo)),
        "a second reply",
    )
    assert all(e.decrypted for e in as_person.replies_from(echo))
