"""Encryption devices for appservice users, and their key material from transactions.

An appservice user has no login and so no device: one is made for it with
``PUT /devices/{id}`` as the user (MSC4190), or, where the homeserver lacks that,
by logging in with the appservice token (``m.login.application_service``). Its id
is kept with the device's keys in the store and reused on every start. Requests
then name the device (``?device_id=``, MSC3202), and what a client would read in
/sync (to-device messages, device list changes, one-time key counts) comes in the
transactions (MSC2409/MSC4203, MSC3202), handed to each device as a /sync-shaped
view by :func:`sync_view`.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from salon._exceptions import MatrixRequestError, NotFoundError, RateLimitedError
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.machine import CryptoSettings, DeviceCrypto
from salon.metrics import CRYPTO_UNAVAILABLE
from salon.store.crypto import CryptoStore

log = structlog.get_logger("salon.matrix.crypto")

DISPLAY_NAME = "Salon"
# The transaction fields, unstable names first (as Synapse sends them), then stable.
TO_DEVICE = ("de.sorunome.msc2409.to_device", "to_device")
DEVICE_LISTS = ("org.matrix.msc3202.device_lists", "device_lists")
KEY_COUNTS = (
    "org.matrix.msc3202.device_one_time_keys_count",
    "org.matrix.msc3202.device_one_time_key_counts",
    "device_one_time_keys_count",
)
FALLBACK_TYPES = (
    "org.matrix.msc3202.device_unused_fallback_key_types",
    "device_unused_fallback_key_types",
)
# The room events a device follows (room settings, who to share keys with).
_ROOM_CHANGES = {"m.room.encryption", "m.room.member"}
REQUIREMENTS = (
    "MSC4190 device management or m.login.application_service, MSC2409/MSC4203 to-device "
    "messages and MSC3202 device lists, one-time key counts and device masquerading"
)


def new_device_id() -> str:
    """A fresh device id, in the style homeservers use (ten capitals)."""
    return "SALON" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(8))


async def attach_appservice_device(
    api: MatrixAPI, store: CryptoStore, settings: CryptoSettings
) -> DeviceCrypto | None:
    """The user's one durable device (made on first start, the same one after), with
    its keys; None, logged and counted, when the homeserver will not make one: the
    user then goes on without encryption (silent in encrypted rooms)."""
    async with settings.resident.setups:  # a few at a time: see crypto.resident
        return await _attach(api, store, settings)


async def _attach(
    api: MatrixAPI, store: CryptoStore, settings: CryptoSettings
) -> DeviceCrypto | None:
    stored = await store.account(api.user_id)
    device_id = stored[0] if stored is not None else new_device_id()
    try:
        if not await api.has_device(device_id):
            await _make_device(api, device_id)
            if stored is not None and stored[2]:
                # The homeserver lost it (reset, deleted): same keys, published again.
                log.warning("crypto.device_remade", user=api.user_id, device=device_id)
                await store.save_account(api.user_id, device_id, stored[1], False)
        api.act_as_device(device_id)
        crypto = await DeviceCrypto.attach_in_slot(api, store, settings, follows_sync=True)
        CRYPTO_UNAVAILABLE.labels(identity=api.user_id).set(0)
        return crypto
    except MatrixRequestError as e:
        if isinstance(e, RateLimitedError) or e.http_status >= 500:
            raise  # a passing trouble: the identity's start is retried
        CRYPTO_UNAVAILABLE.labels(identity=api.user_id).set(1)
        log.error(
            "crypto.appservice_unsupported",
            user=api.user_id,
            error=str(e),
            needs=REQUIREMENTS,
            effect="this agent cannot read or answer in encrypted rooms",
        )
        return None


async def _make_device(api: MatrixAPI, device_id: str) -> None:
    try:
        await api.create_device(device_id, DISPLAY_NAME)
    except NotFoundError:
        # No MSC4190: PUT only renames devices that exist. Logging in makes it.
        log.info("crypto.device_by_login", user=api.user_id, device=device_id)
        await api.login_device(device_id, DISPLAY_NAME)


def sync_view(body: Mapping[str, Any], user_id: str, device_id: str) -> dict[str, Any] | None:
    """What of a transaction was meant for one device alone (to-device messages, its
    one-time key counts), /sync-shaped; None if nothing."""
    to_device = [
        e
        for e in _first(body, TO_DEVICE, list)
        if isinstance(e, dict)
        and e.get("to_user_id") == user_id
        and e.get("to_device_id") == device_id
    ]
    counts = _first(body, KEY_COUNTS, dict).get(user_id)
    counts = counts.get(device_id) if isinstance(counts, dict) else None
    fallback = _first(body, FALLBACK_TYPES, dict).get(user_id)
    fallback = fallback.get(device_id) if isinstance(fallback, dict) else None
    if not (to_device or isinstance(counts, dict)):
        return None
    view: dict[str, Any] = {"to_device": {"events": to_device}}
    if isinstance(counts, dict):
        view["device_one_time_keys_count"] = counts
    if isinstance(fallback, list):
        view["device_unused_fallback_key_types"] = fallback
    return view


def shared_changes(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """What of a transaction every device follows (device list changes, rooms'
    encryption and members), /sync-shaped; None if nothing."""
    lists = _first(body, DEVICE_LISTS, dict)
    rooms = _room_changes(body.get("events"))
    if not (lists.get("changed") or lists.get("left") or rooms):
        return None
    return {"device_lists": lists, "rooms": {"join": rooms}}


def _first(body: Mapping[str, Any], names: Sequence[str], kind: type) -> Any:
    for name in names:
        value = body.get(name)
        if isinstance(value, kind):
            return value
    return kind()


def _room_changes(events: Any) -> dict[str, Any]:
    rooms: dict[str, Any] = {}
    for event in events if isinstance(events, list) else []:
        if isinstance(event, dict) and event.get("type") in _ROOM_CHANGES:
            room_id = event.get("room_id")
            if isinstance(room_id, str):
                timeline = rooms.setdefault(room_id, {"timeline": {"events": []}})
                timeline["timeline"]["events"].append(event)
    return rooms
