"""Signed JSON and device keys, as the Matrix spec defines them (canonical JSON,
unpadded base64, ed25519 signatures), on vodozemac's key types."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import vodozemac

OLM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"
JSON = dict[str, Any]


def room_encryption_state() -> JSON:
    """The ``m.room.encryption`` state event (Megolm, the spec's default rotation) a
    room is created with to be encrypted."""
    return {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64encode(data: bytes) -> str:
    """Unpadded base64, as Matrix writes it."""
    return base64.b64encode(data).decode().rstrip("=")


def b64decode(text: str) -> bytes:
    """Decode (unpadded) base64."""
    return base64.b64decode(text + "=" * (-len(text) % 4))


def sign(value: JSON, account: vodozemac.Account, user_id: str, device_id: str) -> JSON:
    """``value`` with this device's signature added."""
    unsigned = {k: v for k, v in value.items() if k not in ("signatures", "unsigned")}
    signature = account.sign(canonical(unsigned)).to_base64()
    signed = dict(value)
    signed["signatures"] = {user_id: {f"ed25519:{device_id}": signature}}
    return signed


def verify(value: Mapping[str, Any], user_id: str, device_id: str, ed25519: str) -> bool:
    """Whether ``value`` carries a valid signature of that device's ed25519 key."""
    signatures = value.get("signatures")
    by_user = signatures.get(user_id) if isinstance(signatures, dict) else None
    signature = by_user.get(f"ed25519:{device_id}") if isinstance(by_user, dict) else None
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in value.items() if k not in ("signatures", "unsigned")}
    try:
        vodozemac.Ed25519PublicKey.from_base64(ed25519).verify_signature(
            canonical(unsigned), vodozemac.Ed25519Signature.from_base64(signature)
        )
    except (vodozemac.SignatureException, vodozemac.KeyException, vodozemac.DecodeException):
        return False
    return True


@dataclass(frozen=True)
class Device:
    """Another device, from a verified ``/keys/query`` answer."""

    user_id: str
    device_id: str
    curve25519: str
    ed25519: str

    @property
    def key(self) -> str:
        """How it is remembered among those a room key was shared with."""
        return f"{self.user_id}|{self.device_id}"


def parse_device(user_id: str, device_id: str, keys: object) -> Device | None:
    """The device's keys if the entry is well formed and self-signed, else None."""
    if not isinstance(keys, dict):
        return None
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        return None
    by_id = keys.get("keys") if isinstance(keys.get("keys"), dict) else {}
    assert isinstance(by_id, dict)
    curve, ed = by_id.get(f"curve25519:{device_id}"), by_id.get(f"ed25519:{device_id}")
    if not (isinstance(curve, str) and isinstance(ed, str)):
        return None
    if not verify(keys, user_id, device_id, ed):
        return None
    return Device(user_id, device_id, curve, ed)


def device_keys(account: vodozemac.Account, user_id: str, device_id: str) -> JSON:
    """This device's signed identity keys, for ``/keys/upload``."""
    return sign(
        {
            "user_id": user_id,
            "device_id": device_id,
            "algorithms": [OLM, MEGOLM],
            "keys": {
                f"curve25519:{device_id}": account.curve25519_key.to_base64(),
                f"ed25519:{device_id}": account.ed25519_key.to_base64(),
            },
        },
        account,
        user_id,
        device_id,
    )


def one_time_keys(account: vodozemac.Account, user_id: str, device_id: str) -> JSON:
    """The account's unpublished one-time keys, signed, for ``/keys/upload``."""
    return {
        f"signed_curve25519:{key_id}": sign({"key": key.to_base64()}, account, user_id, device_id)
        for key_id, key in account.one_time_keys.items()
    }
