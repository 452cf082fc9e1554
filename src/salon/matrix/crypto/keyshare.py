"""Room keys as they arrive over Olm, and asking for the ones that did not.

``m.room_key`` is a sender's key for its own session. ``m.forwarded_room_key`` is a
key another device passes on: taken only when this device asked for it (an event of
that session waits for it) and only from that event's sender or this identity
itself. ``m.room_key_request`` is sent once per missing session, when its first
event starts waiting, to the sender's devices and this identity's own. Requests from
others are not answered: each Salon identity has one device, and a key handed to a
device it was never shared with would let that device read the room.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import vodozemac

from salon._exceptions import MatrixError
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.keys import JSON, MEGOLM
from salon.matrix.crypto.olm import OlmPayload

log = structlog.get_logger("salon.matrix.crypto")

ROOM_KEY = "m.room_key"
FORWARDED_ROOM_KEY = "m.forwarded_room_key"
ROOM_KEY_REQUEST = "m.room_key_request"


@dataclass(frozen=True)
class RoomKey:
    """A Megolm session to read a room with, and the keys of the device that made it."""

    room_id: str
    session_id: str
    keys: tuple[str, str]  # (curve25519, ed25519) of the session's creator
    session: vodozemac.InboundGroupSession
    forwarded: bool


def room_key(payload: OlmPayload) -> RoomKey | None:
    """The room key in a decrypted to-device payload; None (logged) if it holds none
    or a malformed one."""
    if payload.type not in (ROOM_KEY, FORWARDED_ROOM_KEY):
        return None
    key = payload.content
    room_id, session_id = key.get("room_id"), key.get("session_id")
    if key.get("algorithm") != MEGOLM or not isinstance(room_id, str):
        return None
    forwarded = payload.type == FORWARDED_ROOM_KEY
    try:
        if forwarded:
            exported = vodozemac.ExportedSessionKey(str(key.get("session_key")))
            session = vodozemac.InboundGroupSession.import_session(exported)
            keys = (str(key.get("sender_key")), str(key.get("sender_claimed_ed25519_key")))
        else:
            session = vodozemac.InboundGroupSession(
                vodozemac.SessionKey(str(key.get("session_key")))
            )
            keys = (payload.sender_key, payload.signing_key)
    except ValueError:
        session = None
    if session is None or session.session_id != session_id:
        log.warning("crypto.bad_room_key", sender=payload.sender, room_id=room_id)
        return None
    return RoomKey(room_id, session_id, keys, session, forwarded)


def forward_wanted(me: str, forwarder: str, waiting: list[Mapping[str, Any]]) -> bool:
    """Whether a forwarded key is taken: something waits for it, and it comes from
    the waiting event's sender or from this identity's own devices."""
    return bool(waiting) and (forwarder == me or any(e.get("sender") == forwarder for e in waiting))


async def request_key(
    api: MatrixAPI, device_id: str, sender: str, room_id: str, content: Mapping[str, Any]
) -> None:
    """Ask the sender's devices and this identity's own for the room key of an
    encrypted event (``content``) that came without it. A failure is logged: the
    event still waits for the key to come by itself."""
    body: JSON = {
        "algorithm": MEGOLM,
        "room_id": room_id,
        "session_id": content.get("session_id"),
    }
    if isinstance(content.get("sender_key"), str):
        body["sender_key"] = content["sender_key"]
    request: JSON = {
        "action": "request",
        "body": body,
        "request_id": uuid.uuid4().hex,
        "requesting_device_id": device_id,
    }
    messages = {sender: {"*": request}, api.user_id: {"*": request}}
    try:
        await api.send_to_device(ROOM_KEY_REQUEST, messages, txn_id=uuid.uuid4().hex)
    except MatrixError as e:
        log.warning("crypto.key_request_failed", room_id=room_id, error=str(e))
        return
    log.info("crypto.key_requested", sender=sender, room_id=room_id, session_id=body["session_id"])
