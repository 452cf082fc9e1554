"""One identity's device: its keys, fed by the sync loop, used by every send.

Everything an identity sends goes through :meth:`MatrixAPI.send_event`, which
asks :meth:`DeviceCrypto.encrypt`; the sync loop hands each /sync answer to
:meth:`DeviceCrypto.process_sync` (to-device keys, one-time key counts, device
and membership changes) and every timeline event to :meth:`DeviceCrypto.decrypt`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import vodozemac

from salon._exceptions import MatrixError
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.cross_signing import cross_sign
from salon.matrix.crypto.keys import JSON, MEGOLM, device_keys, one_time_keys
from salon.matrix.crypto.keyshare import forward_wanted, request_key, room_key
from salon.matrix.crypto.megolm import (
    Outbound,
    Undecryptable,
    encrypted_content,
    open_event,
    share_key,
)
from salon.matrix.crypto.olm import Olm, OwnDevice
from salon.matrix.crypto.resident import ResidentAccounts
from salon.matrix.crypto.rooms import RoomView
from salon.matrix.events import InboundEvent, parse_event
from salon.metrics import DECRYPTION_FAILURES, ONE_TIME_KEYS, UNDECRYPTABLE_WAITING
from salon.store.crypto import CryptoStore

log = structlog.get_logger("salon.matrix.crypto")


@dataclass(frozen=True)
class CryptoSettings:
    """The pickle key (32 bytes) every secret is stored under, how long an event
    waits for its room key before it is dropped, and which identities keep their
    account in memory (shared by all the devices made with these settings)."""

    pickle_key: bytes
    undecryptable_wait_s: float = 600.0
    resident: ResidentAccounts = field(default_factory=ResidentAccounts, compare=False)


class CryptoSetupError(MatrixError):
    """The identity's stored keys cannot be used (wrong pickle key, no device)."""


class DeviceCrypto:
    """End-to-end encryption for one identity (in appservice mode fed from the
    transactions: :mod:`salon.matrix.crypto.appservice`)."""

    def __init__(
        self, api: MatrixAPI, store: CryptoStore, me: OwnDevice, settings: CryptoSettings
    ) -> None:
        self.api = api
        self.store = store
        self.me = me
        self.olm = Olm(me, store)
        self.settings = settings
        self._max_keys = me.account.max_number_of_one_time_keys
        self.one_time_keys = 0
        self.waiting_now = 0  # events waiting for their room key (as last counted)
        self.failures = 0  # encrypted events given up on since start
        self._lock = asyncio.Lock()  # one change of sessions at a time
        self.rooms = RoomView(api, store)

    @property
    def device_id(self) -> str:
        return self.me.device_id

    @property
    def follows_sync(self) -> bool:
        """False for an identity that never syncs (the operator the API sends as):
        nothing tells it of new members, devices or encryption, so each send looks them
        up, and what it learns is not stored for the others."""
        return self.rooms.store is not None

    @follows_sync.setter
    def follows_sync(self, value: bool) -> None:
        self.rooms.store = self.store if value else None

    @classmethod
    async def attach(
        cls,
        api: MatrixAPI,
        store: CryptoStore,
        settings: CryptoSettings,
        *,
        follows_sync: bool = True,
    ) -> DeviceCrypto:
        """Load (or make and publish) the identity's device keys and hook them into
        ``api``'s sends. The same device id keeps the same keys across restarts."""
        async with settings.resident.setups:  # a few at a time: see crypto.resident
            return await cls.attach_in_slot(api, store, settings, follows_sync)

    @classmethod
    async def attach_in_slot(
        cls, api: MatrixAPI, store: CryptoStore, settings: CryptoSettings, follows_sync: bool
    ) -> DeviceCrypto:
        """:meth:`attach`, for a caller that holds one of ``settings.resident.setups``."""
        device_id = await api.device_id()
        if not device_id:
            raise CryptoSetupError(f"{api.user_id} has no device to hold encryption keys")
        stored = await store.account(api.user_id)
        published = False
        if stored is not None and stored[0] == device_id:
            try:
                account = vodozemac.Account.from_pickle(stored[1], settings.pickle_key)
            except vodozemac.PickleException as e:
                raise CryptoSetupError(
                    f"the encryption keys of {api.user_id} do not open with this pickle key"
                    " (was the key file or secret changed? Gateways sharing one store need"
                    " the same key: encryption.pickle_key_env)"
                ) from e
            published = stored[2]
        else:
            if stored is not None:
                log.warning("crypto.device_replaced", user=api.user_id, old=stored[0])
                await store.forget_sessions(api.user_id)
            account = vodozemac.Account()

        async def save(published: bool = True) -> None:
            pickle = me.account.pickle(settings.pickle_key)
            await store.save_account(api.user_id, device_id, pickle, published)

        me = OwnDevice(api.user_id, device_id, account, settings.pickle_key, save)
        crypto = cls(api, store, me, settings)
        crypto.follows_sync = follows_sync
        async with crypto._lock:  # the account may be let go only once this is done
            if not published:
                await crypto._publish(with_device_keys=True)
            api.crypto = crypto
            try:
                await cross_sign(api, store, me, settings.pickle_key)
            except MatrixError as e:
                # The device works unsigned; clients show a warning on its messages.
                log.warning("crypto.cross_signing_failed", user=api.user_id, error=str(e))
        settings.resident.used(crypto)
        log.info("crypto.ready", user=api.user_id, device=device_id, new=not published)
        return crypto

    def evict(self) -> bool:
        """Let the account go (it is in the store); False while it is in use (every
        use of it holds the lock)."""
        if self._lock.locked():
            return False
        self.me.evict()
        return True

    async def _account(self) -> None:
        """The account in memory, read back from the store if it was let go (called
        holding the lock)."""
        if not self.me.resident:
            stored = await self.store.account(self.me.user_id)
            if stored is None or stored[0] != self.device_id:
                raise CryptoSetupError(f"the device keys of {self.me.user_id} left the store")
            self.me.reload(stored[1])
            log.debug("crypto.account_reloaded", user=self.me.user_id)
        self.settings.resident.used(self)

    async def _publish(self, *, with_device_keys: bool = False, held: int = 0) -> None:
        await self._account()
        account = self.me.account
        wanted = account.max_number_of_one_time_keys // 2 - held
        if wanted > 0:
            account.generate_one_time_keys(wanted)
        body: JSON = {"one_time_keys": one_time_keys(account, self.me.user_id, self.device_id)}
        if with_device_keys:
            body["device_keys"] = device_keys(account, self.me.user_id, self.device_id)
        # Saved before the upload: keys the server has must never be lost here.
        if with_device_keys:
            await self._save_unpublished()
        else:
            await self.me.save()
        counts = await self.api.upload_keys(body)
        account.mark_keys_as_published()
        await self.me.save()
        self.one_time_keys = counts.get("signed_curve25519", 0)
        ONE_TIME_KEYS.labels(identity=self.me.user_id).set(self.one_time_keys)

    async def _save_unpublished(self) -> None:
        pickle = self.me.account.pickle(self.settings.pickle_key)
        await self.store.save_account(self.me.user_id, self.device_id, pickle, False)

    # --- receiving ----------------------------------------------------------------

    async def process_sync(self, data: Mapping[str, Any]) -> list[InboundEvent]:
        """Take in one /sync answer's key material; returns waiting events that a
        newly arrived room key opened (decrypted, oldest first)."""
        async with self._lock:
            self.note_changes(data)
            await self.save_changes()
            counts = data.get("device_one_time_keys_count")
            if isinstance(counts, dict):
                held = int(counts.get("signed_curve25519") or 0)
                self.one_time_keys = held
                ONE_TIME_KEYS.labels(identity=self.me.user_id).set(held)
                if held < self._max_keys // 4:
                    await self._publish(held=held)
            opened: list[tuple[str, str]] = []
            to_device = (data.get("to_device") or {}).get("events") or []
            for event in to_device:
                if isinstance(event, dict) and event.get("type") == "m.room.encrypted":
                    await self._account()
                    key = await self._receive(str(event.get("sender")), event.get("content"))
                    if key is not None:
                        opened.append(key)
        retried: list[InboundEvent] = []
        for room_id, session_id in opened:
            for text in await self.store.pending_for(self.me.user_id, room_id, session_id):
                raw = json.loads(text)
                await self.store.drop_pending(self.me.user_id, str(raw.get("event_id")))
                retried.extend(await self.decrypt([_parsed(raw, room_id, UserId(self.me.user_id))]))
        await self._expire()
        return retried

    def note_changes(
        self, data: Mapping[str, Any], *, rooms_known: bool = False, keep: bool = True
    ) -> None:
        """See :meth:`RoomView.note_changes`."""
        self.rooms.note_changes(data, rooms_known=rooms_known, keep=keep)

    async def save_changes(self) -> None:
        """See :meth:`RoomView.save_changes`."""
        await self.rooms.save_changes()

    async def _receive(self, sender: str, content: Any) -> tuple[str, str] | None:
        payload = await self.olm.decrypt(sender, content)
        key = room_key(payload) if payload is not None else None
        if key is None:
            return None  # requests for our keys among them: never answered (keyshare)
        me = self.me.user_id
        if key.forwarded:
            waiting = await self.store.pending_for(me, key.room_id, key.session_id)
            if not forward_wanted(me, sender, [json.loads(t) for t in waiting]):
                log.warning("crypto.forwarded_key_refused", sender=sender, room_id=key.room_id)
                return None
        pickle = key.session.pickle(self.settings.pickle_key)
        await self.store.add_inbound_group(me, key.room_id, key.session_id, key.keys, pickle)
        log.debug("crypto.room_key", sender=sender, room_id=key.room_id, forwarded=key.forwarded)
        return key.room_id, key.session_id

    async def decrypt(self, events: Sequence[InboundEvent]) -> list[InboundEvent]:
        """``events`` with encrypted ones opened; one whose key has not arrived is kept
        aside (and retried when it does), one that can never open is dropped."""
        result: list[InboundEvent] = []
        for event in events:
            if event.type != "m.room.encrypted":
                result.append(event)
                continue
            session_id = event.content.get("session_id")
            if event.content.get("algorithm") != MEGOLM or not isinstance(session_id, str):
                self._failed(event.event_id, event.room_id, "unknown_algorithm")
                continue
            found = await self.store.inbound_group(self.me.user_id, event.room_id, session_id)
            if found is None:
                me = self.me.user_id
                # The first event of a session to wait asks for its key, once.
                first = not await self.store.pending_for(me, event.room_id, session_id)
                await self.store.add_pending(
                    me, event.event_id, event.room_id, session_id, event.to_json()
                )
                if first and self.api is not None:
                    await request_key(
                        self.api, self.device_id, event.sender, event.room_id, event.content
                    )
                log.info("crypto.waiting_for_key", event_id=event.event_id, room_id=event.room_id)
                continue
            try:
                opened = open_event(event.raw, event.room_id, found[2], self.settings.pickle_key)
            except Undecryptable as e:
                self._failed(event.event_id, event.room_id, e.reason)
                continue
            parsed = parse_event(opened, event.room_id, UserId(self.me.user_id))
            if parsed is not None:
                result.append(parsed)
        await self._count_waiting()
        return result

    async def open_past(self, raw: Mapping[str, Any], room_id: str) -> JSON | None:
        """An event read back from the room's history, decrypted with a room key this
        identity holds (its own, or one shared with it); None if it cannot be."""
        content = raw.get("content") or {}
        session_id = content.get("session_id")
        if content.get("algorithm") != MEGOLM or not isinstance(session_id, str):
            return None
        found = await self.store.inbound_group(self.me.user_id, room_id, session_id)
        if found is None:
            return None
        try:
            return open_event(raw, room_id, found[2], self.settings.pickle_key)
        except Undecryptable:
            return None

    async def waiting(self) -> int:
        """Events waiting for their room key."""
        return await self.store.pending_count(self.me.user_id)

    async def _expire(self) -> None:
        cutoff = int((time.time() - self.settings.undecryptable_wait_s) * 1000)
        for event_id, room_id in await self.store.pending_older_than(self.me.user_id, cutoff):
            await self.store.drop_pending(self.me.user_id, event_id)
            self._failed(event_id, room_id, "key_never_arrived")
        await self._count_waiting()

    async def _count_waiting(self) -> None:
        self.waiting_now = await self.waiting()
        UNDECRYPTABLE_WAITING.labels(identity=self.me.user_id).set(self.waiting_now)

    def report(self) -> JSON:
        """This device as `salon status` shows it (counts as of the last sync)."""
        return {
            "identity": self.me.user_id,
            "device_id": self.device_id,
            "one_time_keys": self.one_time_keys,
            "undecryptable_waiting": self.waiting_now,
            "decryption_failures": self.failures,
        }

    def _failed(self, event_id: str, room_id: str, reason: str) -> None:
        self.failures += 1
        DECRYPTION_FAILURES.labels(identity=self.me.user_id, reason=reason).inc()
        log.warning(
            "crypto.undecryptable_dropped", event_id=event_id, room_id=room_id, reason=reason
        )

    # --- sending ------------------------------------------------------------------

    async def encrypt(self, room_id: RoomId, event_type: str, content: JSON) -> tuple[str, JSON]:
        """(type, content) to send: Megolm-encrypted in an encrypted room."""
        if not self.follows_sync:
            self.rooms.forget(room_id)
        settings = await self.rooms.encryption(room_id)
        if settings is None:
            return event_type, content
        async with self._lock:
            members = await self.rooms.members(room_id)
            devices = await self.rooms.devices_of(members, (self.me.user_id, self.device_id))
            outbound = await self._outbound(room_id, settings, members)
            fresh = [d for d in devices if d.key not in outbound.shared_with]
            if fresh:
                await self._account()  # new Olm sessions are started from it
                await share_key(self.api, self.olm, room_id, outbound, fresh)
            result = encrypted_content(self.olm, outbound, room_id, event_type, content)
            await self.store.save_outbound_group(
                self.me.user_id, room_id, *outbound.to_row(self.settings.pickle_key)
            )
        return "m.room.encrypted", result

    async def _outbound(self, room_id: str, settings: JSON, members: set[str]) -> Outbound:
        row = await self.store.outbound_group(self.me.user_id, room_id)
        if row is not None:
            outbound = Outbound.from_row(row, self.settings.pickle_key)
            if not outbound.expired(settings) and not outbound.departed(members):
                return outbound
            log.info("crypto.rotating", user=self.me.user_id, room_id=room_id)
        outbound = Outbound(vodozemac.GroupSession())
        # Our own copy, so this identity reads its own messages back.
        inbound = vodozemac.InboundGroupSession(outbound.session.session_key)
        await self.store.add_inbound_group(
            self.me.user_id,
            room_id,
            outbound.session.session_id,
            (self.me.curve25519, self.me.ed25519),
            inbound.pickle(self.settings.pickle_key),
        )
        return outbound


def _parsed(raw: Mapping[str, Any], room_id: str, me: UserId) -> InboundEvent:
    event = parse_event(raw, room_id, me)
    assert event is not None  # it was parsed once before it was kept
    return event
