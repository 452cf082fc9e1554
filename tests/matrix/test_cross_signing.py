"""Cross-signing keys: made once, kept, uploaded once; the device signed again only
when it changes; a refused signature is not taken as done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from tests.matrix.test_crypto import KEY, own

from salon._exceptions import UnknownTokenError
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.cross_signing import (
    CrossSigningKeys,
    cross_sign,
    key_object,
    public_key,
    signed_by,
)
from salon.matrix.crypto.keys import verify
from salon.store import Store

USER = "@agent:x"


class KeysApi:
    """The homeserver's key-upload endpoints, recording what was sent."""

    def __init__(self) -> None:
        self.signing_keys: list[dict[str, Any]] = []
        self.signatures: list[dict[str, Any]] = []
        self.failures: dict[str, Any] = {}

    async def upload_signing_keys(self, body: dict[str, Any]) -> None:
        self.signing_keys.append(body)

    async def upload_signatures(self, signed: dict[str, Any]) -> dict[str, Any]:
        self.signatures.append(signed)
        return {"failures": self.failures}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    yield store
    await store.close()


def _key(entry: dict[str, Any]) -> str:
    [public] = entry["keys"].values()
    return str(public)


async def test_keys_are_made_once_and_the_device_signed_once(store: Store) -> None:
    api = KeysApi()
    device = own(USER, "DEV1")
    assert await cross_sign(cast(MatrixAPI, api), store.crypto, device, KEY)
    [body] = api.signing_keys
    master, ssk = _key(body["master_key"]), _key(body["self_signing_key"])
    # The master key signs the other two; the self-signing key signs the device.
    for usage in ("self_signing_key", "user_signing_key"):
        signature = body[usage]["signatures"][USER][f"ed25519:{master}"]
        assert isinstance(signature, str)
    [signed] = api.signatures
    device_keys = signed[USER]["DEV1"]
    assert device_keys["keys"]["ed25519:DEV1"] == device.ed25519
    assert set(device_keys["signatures"][USER]) == {f"ed25519:{ssk}"}
    # Same device again (a restart): nothing to do.
    assert not await cross_sign(cast(MatrixAPI, api), store.crypto, device, KEY)
    assert (len(api.signing_keys), len(api.signatures)) == (1, 1)
    # A new device: signed by the same keys, no new keys uploaded.
    assert await cross_sign(cast(MatrixAPI, api), store.crypto, own(USER, "DEV2"), KEY)
    assert len(api.signing_keys) == 1
    assert set(api.signatures[1][USER]["DEV2"]["signatures"][USER]) == {f"ed25519:{ssk}"}


async def test_a_refused_signature_is_tried_again_at_the_next_start(store: Store) -> None:
    api = KeysApi()
    api.failures = {USER: {"DEV1": {"errcode": "M_INVALID_SIGNATURE"}}}
    device = own(USER, "DEV1")
    assert not await cross_sign(cast(MatrixAPI, api), store.crypto, device, KEY)
    row = await store.crypto.cross_signing(USER)
    assert row is not None and row[1] is None  # kept, but not taken as signed
    api.failures = {}
    assert await cross_sign(cast(MatrixAPI, api), store.crypto, device, KEY)
    # The keys made the first time were kept and re-sent (a no-op at the homeserver).
    assert api.signing_keys[0] == api.signing_keys[1]
    row = await store.crypto.cross_signing(USER)
    assert row is not None and row[1] == "DEV1"


def test_a_signed_key_verifies_under_the_signers_public_key() -> None:
    keys = CrossSigningKeys.new()
    signed = signed_by(key_object(USER, "self_signing", keys.self_signing), keys.master, USER)
    master = public_key(keys.master)
    # keys.verify takes a device id for the key id; a cross-signing key's id is its key.
    assert verify(signed, USER, master, master)
    signed["usage"] = ["master"]
    assert not verify(signed, USER, master, master)


async def test_the_store_keeps_the_keys_on_both_backends(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        assert await store.crypto.cross_signing(USER) is None
        await store.crypto.save_cross_signing(USER, ("m", "s", "u"), None)
        assert await store.crypto.cross_signing(USER) == (("m", "s", "u"), None)
        await store.crypto.save_cross_signing(USER, ("m", "s", "u"), "DEV")
        assert await store.crypto.cross_signing(USER) == (("m", "s", "u"), "DEV")
    finally:
        await store.close()


async def test_keys_set_up_elsewhere_are_never_replaced(store: Store) -> None:
    class Guarded(KeysApi):
        async def upload_signing_keys(self, body: dict[str, Any]) -> None:
            # Synapse's answer when the account has other keys: interactive auth.
            raise UnknownTokenError("upload signing keys: 401", http_status=401)

    api = Guarded()
    assert not await cross_sign(cast(MatrixAPI, api), store.crypto, own(USER, "DEV1"), KEY)
    assert api.signatures == []  # nothing signed with keys the homeserver does not have
    row = await store.crypto.cross_signing(USER)
    assert row is not None and row[1] is None  # to be tried again at the next start
