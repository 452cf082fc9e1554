"""Megolm: the room's group ratchet. Sending: one outbound session per room,
its key handed to every member device over Olm, rotated when a member leaves or
the room's rotation period runs out. Receiving: room keys kept, events opened."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import vodozemac

from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.keys import JSON, MEGOLM, Device, canonical
from salon.matrix.crypto.olm import Olm

log = structlog.get_logger("salon.matrix.crypto")

# The spec's defaults when m.room.encryption does not say (a week, 100 messages).
DEFAULT_ROTATION_MS = 7 * 24 * 3600 * 1000
DEFAULT_ROTATION_MSGS = 100


@dataclass
class Outbound:
    """A room's sending session and the devices (``user|device``) that have its key."""

    session: vodozemac.GroupSession
    shared_with: set[str] = field(default_factory=set)
    created_at: int = field(default_factory=lambda: int(time.time() * 1000))

    def expired(self, settings: Mapping[str, Any]) -> bool:
        """Whether the room's rotation period (time or messages) has run out."""
        period_ms = settings.get("rotation_period_ms")
        period_msgs = settings.get("rotation_period_msgs")
        max_ms = period_ms if isinstance(period_ms, int) and period_ms > 0 else DEFAULT_ROTATION_MS
        max_msgs = (
            period_msgs
            if isinstance(period_msgs, int) and period_msgs > 0
            else DEFAULT_ROTATION_MSGS
        )
        age = time.time() * 1000 - self.created_at
        return age >= max_ms or self.session.message_index >= max_msgs

    def departed(self, members: set[str]) -> bool:
        """Whether someone it was shared with is no longer in the room."""
        return any(key.partition("|")[0] not in members for key in self.shared_with)

    def to_row(self, pickle_key: bytes) -> tuple[str, str, int]:
        return (
            self.session.pickle(pickle_key),
            json.dumps(sorted(self.shared_with)),
            self.created_at,
        )

    @classmethod
    def from_row(cls, row: tuple[str, str, int], pickle_key: bytes) -> Outbound:
        session = vodozemac.GroupSession.from_pickle(row[0], pickle_key)
        return cls(session, set(json.loads(row[1])), row[2])


async def share_key(
    api: MatrixAPI, olm: Olm, room_id: str, outbound: Outbound, devices: Sequence[Device]
) -> None:
    """Hand the room key to ``devices`` over Olm (claiming a one-time key of each device
    without a session first); those reached are added to ``outbound.shared_with``."""
    missing: dict[str, list[str]] = {}
    for device in devices:
        if await olm.session_for(device) is None:
            missing.setdefault(device.user_id, []).append(device.device_id)
    if missing:
        await olm.start_sessions(await api.claim_keys(missing), devices)
    key = {
        "algorithm": MEGOLM,
        "room_id": room_id,
        "session_id": outbound.session.session_id,
        "session_key": outbound.session.session_key.to_base64(),
    }
    messages: dict[str, dict[str, JSON]] = {}
    reached: list[str] = []
    for device in devices:
        session = await olm.session_for(device)
        if session is None:
            # No one-time key left on that device: it gets the key at the next send.
            log.warning("crypto.device_unreachable", user=device.user_id, device=device.device_id)
            continue
        content = await olm.encrypt(device, session, "m.room_key", key)
        messages.setdefault(device.user_id, {})[device.device_id] = content
        reached.append(device.key)
    if messages:
        await api.send_to_device("m.room.encrypted", messages, txn_id=uuid.uuid4().hex)
    outbound.shared_with.update(reached)


def encrypted_content(
    olm: Olm, outbound: Outbound, room_id: str, event_type: str, content: JSON
) -> JSON:
    """The ``m.room.encrypted`` content of one event. A relation stays in clear, as
    the spec asks, so servers and clients can aggregate edits and threads."""
    plaintext = {"type": event_type, "content": content, "room_id": room_id}
    message = outbound.session.encrypt(canonical(plaintext))
    result: JSON = {
        "algorithm": MEGOLM,
        "sender_key": olm.me.curve25519,
        "ciphertext": message.to_base64(),
        "session_id": outbound.session.session_id,
        "device_id": olm.me.device_id,
    }
    relation = content.get("m.relates_to")
    if isinstance(relation, dict):
        result["m.relates_to"] = relation
    return result


class Undecryptable(Exception):
    """An encrypted event that can never be opened (``reason`` for the metric)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def open_event(raw: Mapping[str, Any], room_id: str, pickle: str, pickle_key: bytes) -> JSON:
    """The decrypted form of a Megolm event (same id, sender and time), given the
    pickle of its room key. Raises :class:`Undecryptable`."""
    content = raw.get("content") or {}
    session = vodozemac.InboundGroupSession.from_pickle(pickle, pickle_key)
    try:
        message = vodozemac.MegolmMessage.from_base64(str(content.get("ciphertext")))
        decrypted = session.decrypt(message)
        payload = json.loads(decrypted.plaintext)
    except (ValueError, TypeError) as e:
        raise Undecryptable("bad_ciphertext") from e
    if not isinstance(payload, dict) or payload.get("room_id") != room_id:
        raise Undecryptable("wrong_room")
    inner = payload.get("content")
    if not isinstance(inner, dict) or not isinstance(payload.get("type"), str):
        raise Undecryptable("bad_payload")
    relation = content.get("m.relates_to")
    if isinstance(relation, dict) and "m.relates_to" not in inner:
        inner = {**inner, "m.relates_to": relation}
    return {**raw, "type": payload["type"], "content": inner, "room_id": room_id}
