"""A restart does not set every identity's display name and push rules again: with a
thousand agents that was two thousand homeserver requests at each start."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import SERVER, open_store

from salon._exceptions import MatrixConnectionError
from salon.gateway.identities import IdentitySpec, login_all
from salon.ids import UserId
from salon.matrix.login import Authenticator, CredentialSource

USERS = [UserId(f"@salon_a{i}:localhost") for i in range(3)]


class Auth:
    def __init__(self, hs: FakeHomeserver) -> None:
        self.hs = hs
        self.apis: dict[str, Any] = {}

    async def login(self, user_id: UserId, source: CredentialSource) -> Any:
        self.apis[user_id] = api = self.hs.api(user_id)
        return api


def _specs(name: str) -> list[IdentitySpec]:
    return [IdentitySpec(u, f"{name} {i}", CredentialSource()) for i, u in enumerate(USERS)]


def _calls(auth: Auth, method: str) -> int:
    return sum(len(api.calls_to(method)) for api in auth.apis.values())


async def test_a_restart_leaves_an_applied_profile_alone(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver(SERVER)

    async def start(name: str) -> Auth:
        auth = Auth(hs)
        await login_all(cast(Authenticator, auth), _specs(name), jitter_s=0, profiles=store.kv)
        return auth

    first = await start("Agent")
    assert _calls(first, "set_displayname") == 3 and _calls(first, "mute_notifications") == 3
    assert hs.displaynames[USERS[1]] == "Agent 1"

    warm = await start("Agent")
    assert _calls(warm, "set_displayname") == 0 and _calls(warm, "mute_notifications") == 0

    renamed = await start("Helper")  # a label changed in the config: applied again
    assert _calls(renamed, "set_displayname") == 3
    assert hs.displaynames[USERS[1]] == "Helper 1"
    await store.close()


async def test_a_failed_mute_is_tried_again_at_the_next_start(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    hs = FakeHomeserver(SERVER)
    auth = Auth(hs)
    original = hs.api

    def failing(user_id: str, device_id: str = "FAKEDEVICE") -> Any:
        api = original(user_id, device_id)
        api.fail("mute_notifications", MatrixConnectionError("down"))
        return api

    hs.api = failing  # type: ignore[method-assign]
    await login_all(cast(Authenticator, auth), _specs("Agent"), jitter_s=0, profiles=store.kv)
    hs.api = original  # type: ignore[method-assign]
    again = Auth(hs)
    await login_all(cast(Authenticator, again), _specs("Agent"), jitter_s=0, profiles=store.kv)
    assert _calls(again, "mute_notifications") == 3
    await store.close()
