"""Cross-signing on the real Synapse: each identity's device is signed by its
self-signing key, itself signed by its master key, as another user sees them in
/keys/query (so Element shows no red shield); the keys survive a restart."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import vodozemac

from salon.app.gateway import Gateway
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.cross_signing import CrossSigningKeys, cross_sign, public_key
from salon.matrix.crypto.olm import OwnDevice
from salon.matrix.registration import Credentials
from salon.store import Store

from .conftest import salon_config

KEY = b"k" * 32


async def _nothing() -> None:
    return None


def _verify(signed: dict[str, Any], user_id: str, public: str) -> None:
    """``signed`` carries a valid signature of the ed25519 key ``public`` (independent
    of Salon's own canonical JSON)."""
    signature = signed["signatures"][user_id][f"ed25519:{public}"]
    unsigned = {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
    message = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    vodozemac.Ed25519PublicKey.from_base64(public).verify_signature(
        message.encode(), vodozemac.Ed25519Signature.from_base64(signature)
    )


async def _query(http: aiohttp.ClientSession, base: str, token: str, user: str) -> Any:
    url = f"{base}/_matrix/client/v3/keys/query"
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(url, json={"device_keys": {user: []}}, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_each_device_is_cross_signed_by_its_owner_across_a_restart(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    new_user: Callable[..., Awaitable[Credentials]],
    http: aiohttp.ClientSession,
) -> None:
    config = salon_config(synapse, tmp_path)
    gateway = await gateways(config)
    echo = str(config.agent_user_id("echo", synapse.server_name))
    person = await new_user()

    async def chain() -> tuple[str, str]:
        keys = await _query(http, synapse.base_url, person.access_token, echo)
        [master] = keys["master_keys"][echo]["keys"].values()
        ssk = keys["self_signing_keys"][echo]
        [self_signing] = ssk["keys"].values()
        _verify(ssk, echo, master)  # the master key signs the self-signing key
        [(device_id, device)] = keys["device_keys"][echo].items()
        _verify(device, echo, self_signing)  # … which signs the device
        return master, device_id

    master, device_id = await chain()
    await gateway.stop()
    await gateways(config)
    # The same keys and device after a restart: nothing new for clients to trust.
    assert await chain() == (master, device_id)


async def test_keys_set_up_in_a_client_are_left_alone(
    synapse: Any,
    tmp_path: Path,
    new_user: Callable[..., Awaitable[Credentials]],
    http: aiohttp.ClientSession,
) -> None:
    """An account that already has cross-signing keys (set up in Element, say) keeps
    them: Synapse asks for interactive auth, and Salon does not reset them."""
    creds = await new_user()
    api = MatrixAPI(synapse.base_url, UserId(creds.user_id), creds.access_token, session=http)
    theirs = CrossSigningKeys.new()
    await api.upload_signing_keys(theirs.upload_body(creds.user_id))  # first: no auth
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        device = OwnDevice(creds.user_id, creds.device_id, vodozemac.Account(), KEY, _nothing)
        assert not await cross_sign(api, store.crypto, device, KEY)
    finally:
        await store.close()
    keys = await _query(http, synapse.base_url, creds.access_token, creds.user_id)
    [master] = keys["master_keys"][creds.user_id]["keys"].values()
    assert master == public_key(theirs.master)  # still theirs
