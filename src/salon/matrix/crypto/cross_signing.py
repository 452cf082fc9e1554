"""Cross-signing: the identity's master key signs its self-signing key, which signs
its device, so clients (Element) take the device as verified by its owner and show
its messages without a red shield.

The first upload of the keys needs no interactive auth (MSC3967); the keys are made
once, kept (pickled) in the store, and the device is signed again only when it
changes. vodozemac's Python bindings have no bare Ed25519 key pair, so an Olm account
stands in for each key: only its ed25519 key is used, it never holds a session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
import vodozemac

from salon._exceptions import UnknownTokenError
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.keys import JSON, canonical, device_keys
from salon.matrix.crypto.olm import OwnDevice

log = structlog.get_logger("salon.matrix.crypto")

Pickles = tuple[str, str, str]


class CrossSigningStore(Protocol):
    """Where the keys are kept (see :class:`salon.store.crypto.CryptoStore`)."""

    async def cross_signing(self, user_id: str) -> tuple[Pickles, str | None] | None: ...

    async def save_cross_signing(
        self, user_id: str, pickles: Pickles, signed_device: str | None
    ) -> None: ...


@dataclass(frozen=True)
class CrossSigningKeys:
    """An identity's master, self-signing and user-signing keys."""

    master: vodozemac.Account
    self_signing: vodozemac.Account
    user_signing: vodozemac.Account

    @classmethod
    def new(cls) -> CrossSigningKeys:
        return cls(vodozemac.Account(), vodozemac.Account(), vodozemac.Account())

    @classmethod
    def from_pickles(cls, pickles: Pickles, pickle_key: bytes) -> CrossSigningKeys:
        master, self_signing, user_signing = (
            vodozemac.Account.from_pickle(p, pickle_key) for p in pickles
        )
        return cls(master, self_signing, user_signing)

    def pickles(self, pickle_key: bytes) -> Pickles:
        return (
            self.master.pickle(pickle_key),
            self.self_signing.pickle(pickle_key),
            self.user_signing.pickle(pickle_key),
        )

    def upload_body(self, user_id: str) -> JSON:
        """What ``/keys/device_signing/upload`` takes: the master key, and the two
        keys it signs."""
        return {
            "master_key": key_object(user_id, "master", self.master),
            "self_signing_key": signed_by(
                key_object(user_id, "self_signing", self.self_signing), self.master, user_id
            ),
            "user_signing_key": signed_by(
                key_object(user_id, "user_signing", self.user_signing), self.master, user_id
            ),
        }


def public_key(key: vodozemac.Account) -> str:
    return key.ed25519_key.to_base64()


def key_object(user_id: str, usage: str, key: vodozemac.Account) -> JSON:
    """A cross-signing key as the spec writes it (its id is its public key)."""
    public = public_key(key)
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}


def signed_by(value: Mapping[str, Any], key: vodozemac.Account, user_id: str) -> JSON:
    """``value`` with a signature of the cross-signing ``key`` added."""
    unsigned = {k: v for k, v in value.items() if k not in ("signatures", "unsigned")}
    signature = key.sign(canonical(unsigned)).to_base64()
    signatures = {u: dict(s) for u, s in (value.get("signatures") or {}).items()}
    signatures.setdefault(user_id, {})[f"ed25519:{public_key(key)}"] = signature
    return {**unsigned, "signatures": signatures}


async def cross_sign(
    api: MatrixAPI, store: CrossSigningStore, me: OwnDevice, pickle_key: bytes
) -> bool:
    """Make (the first time), publish and use the identity's cross-signing keys to
    sign its device; whether it signed now (False: this device was signed already).

    Keys the account already has from elsewhere are never replaced (that takes the
    account's password and resets the identity people verified): logged, unsigned.

    Raises:
        MatrixError: the homeserver refused otherwise, or could not be reached.
    """
    user = me.user_id
    row = await store.cross_signing(user)
    if row is not None and row[1] == me.device_id:
        return False
    keys = (
        CrossSigningKeys.new() if row is None else CrossSigningKeys.from_pickles(row[0], pickle_key)
    )
    if row is None:
        # Kept before the upload: keys the homeserver has must never be lost here.
        await store.save_cross_signing(user, keys.pickles(pickle_key), None)
    if row is None or row[1] is None:
        # Uploading the same keys again (a crash after the upload) is a no-op there.
        try:
            await api.upload_signing_keys(keys.upload_body(user))
        except UnknownTokenError:
            # 401 asking for interactive auth: the account has other cross-signing
            # keys (set up in a client, or by a store since lost). Replacing them
            # would reset a person's verified identity: never done unasked.
            log.warning(
                "crypto.cross_signing_exists",
                user=user,
                hint="the account has other cross-signing keys; its device stays unsigned"
                " until they are reset in a client",
            )
            return False
    unsigned = {
        k: v for k, v in device_keys(me.account, user, me.device_id).items() if k != "signatures"
    }
    answer = await api.upload_signatures(
        {user: {me.device_id: signed_by(unsigned, keys.self_signing, user)}}
    )
    failures = answer.get("failures") or {}
    if failures:
        log.warning("crypto.cross_signing_refused", user=user, failures=failures)
        return False
    await store.save_cross_signing(user, keys.pickles(pickle_key), me.device_id)
    log.info("crypto.cross_signed", user=user, device=me.device_id, master=public_key(keys.master))
    return True
