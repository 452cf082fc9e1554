"""Olm: the one-to-one encrypted channel between two devices, over to-device
events. Used to hand Megolm room keys to each device of a room's members and to
receive theirs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
import vodozemac

from salon.matrix.crypto.keys import JSON, OLM, Device, b64decode, b64encode, canonical, verify

log = structlog.get_logger("salon.matrix.crypto")


class OlmSessions(Protocol):
    """Where Olm sessions are kept (see :class:`salon.store.crypto.CryptoStore`)."""

    async def olm_sessions(self, user_id: str, sender_key: str) -> list[tuple[str, str]]: ...

    async def save_olm_session(
        self, user_id: str, sender_key: str, session_id: str, pickle: str
    ) -> None: ...


class OwnDevice:
    """This identity's device: its account, and how to save it. The account may be
    let go (:meth:`evict`, it is saved after every change) and read back from the
    store before its next use; its public keys stay."""

    def __init__(
        self,
        user_id: str,
        device_id: str,
        account: vodozemac.Account,
        pickle_key: bytes,
        save: Callable[[], Awaitable[None]],
    ) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.pickle_key = pickle_key
        self.save = save
        self._account: vodozemac.Account | None = account
        self.curve25519 = account.curve25519_key.to_base64()
        self.ed25519 = account.ed25519_key.to_base64()

    @property
    def account(self) -> vodozemac.Account:
        if self._account is None:
            raise RuntimeError(f"the account of {self.user_id} was let go: reload it first")
        return self._account

    @property
    def resident(self) -> bool:
        """Whether the account is in memory."""
        return self._account is not None

    def evict(self) -> None:
        self._account = None

    def reload(self, pickle: str) -> None:
        """The account back from its stored pickle (the same keys, or refused)."""
        account = vodozemac.Account.from_pickle(pickle, self.pickle_key)
        if account.curve25519_key.to_base64() != self.curve25519:
            raise ValueError(f"the stored account of {self.user_id} has other keys")
        self._account = account


@dataclass(frozen=True)
class OlmPayload:
    """A decrypted to-device event: who sent it from which keys, and what."""

    sender: str
    sender_key: str  # curve25519 of the sending device
    signing_key: str  # ed25519 it claims
    type: str
    content: JSON


class Olm:
    """Encrypts to and decrypts from other devices, keeping sessions in the store."""

    def __init__(self, me: OwnDevice, sessions: OlmSessions) -> None:
        self.me = me
        self._sessions = sessions

    async def _save(self, sender_key: str, session: vodozemac.Session) -> None:
        await self._sessions.save_olm_session(
            self.me.user_id, sender_key, session.session_id, session.pickle(self.me.pickle_key)
        )

    async def session_for(self, device: Device) -> vodozemac.Session | None:
        """The most recently used session with ``device``, if any."""
        found = await self._sessions.olm_sessions(self.me.user_id, device.curve25519)
        if not found:
            return None
        return vodozemac.Session.from_pickle(found[0][1], self.me.pickle_key)

    async def start_sessions(self, claimed: JSON, devices: Sequence[Device]) -> None:
        """New sessions from a ``/keys/claim`` answer (keys not signed by the device
        are refused)."""
        by_key = {(d.user_id, d.device_id): d for d in devices}
        for user_id, per_device in (claimed.get("one_time_keys") or {}).items():
            for device_id, keys in (per_device or {}).items():
                device = by_key.get((user_id, device_id))
                if device is None or not isinstance(keys, dict):
                    continue
                for one_time in keys.values():
                    if not (isinstance(one_time, dict) and isinstance(one_time.get("key"), str)):
                        continue
                    if not verify(one_time, user_id, device_id, device.ed25519):
                        log.warning("crypto.bad_one_time_key", user=user_id, device=device_id)
                        continue
                    session = self.me.account.create_outbound_session(
                        vodozemac.Curve25519PublicKey.from_base64(device.curve25519),
                        vodozemac.Curve25519PublicKey.from_base64(one_time["key"]),
                    )
                    await self._save(device.curve25519, session)
                    break

    async def encrypt(
        self, device: Device, session: vodozemac.Session, event_type: str, content: JSON
    ) -> JSON:
        """An ``m.room.encrypted`` to-device content for ``device``."""
        payload = {
            "sender": self.me.user_id,
            "sender_device": self.me.device_id,
            "keys": {"ed25519": self.me.ed25519},
            "recipient": device.user_id,
            "recipient_keys": {"ed25519": device.ed25519},
            "type": event_type,
            "content": content,
        }
        message_type, body = session.encrypt(canonical(payload)).to_parts()
        await self._save(device.curve25519, session)
        return {
            "algorithm": OLM,
            "sender_key": self.me.curve25519,
            "ciphertext": {device.curve25519: {"type": message_type, "body": b64encode(body)}},
        }

    async def decrypt(self, sender: str, content: Any) -> OlmPayload | None:
        """The payload of an ``m.room.encrypted`` to-device event for this device, or
        None (logged) when it is not for us or cannot be opened."""
        if not isinstance(content, dict) or content.get("algorithm") != OLM:
            return None
        sender_key = content.get("sender_key")
        ours = (content.get("ciphertext") or {}).get(self.me.curve25519)
        if not (isinstance(sender_key, str) and isinstance(ours, dict)):
            return None
        try:
            plaintext = await self._open(sender_key, ours.get("type"), str(ours.get("body")))
        except (ValueError, TypeError) as e:  # vodozemac's errors are ValueErrors
            log.warning("crypto.olm_failed", sender=sender, error=type(e).__name__)
            return None
        if plaintext is None:
            log.warning("crypto.olm_no_session", sender=sender)
            return None
        payload = json.loads(plaintext)
        keys = payload.get("keys") if isinstance(payload.get("keys"), dict) else {}
        recipient_keys = payload.get("recipient_keys") or {}
        if (
            payload.get("sender") != sender
            or payload.get("recipient") != self.me.user_id
            or recipient_keys.get("ed25519") != self.me.ed25519
            or not isinstance(keys.get("ed25519"), str)
            or not isinstance(payload.get("content"), dict)
        ):
            log.warning("crypto.olm_mismatch", sender=sender)
            return None
        return OlmPayload(
            sender, sender_key, keys["ed25519"], str(payload.get("type")), payload["content"]
        )

    async def _open(self, sender_key: str, message_type: Any, body: str) -> bytes | None:
        known = await self._sessions.olm_sessions(self.me.user_id, sender_key)
        sessions = [vodozemac.Session.from_pickle(p, self.me.pickle_key) for _, p in known]
        if message_type == 0:
            pre_key = vodozemac.PreKeyMessage.from_base64(body)
            for session in sessions:
                if session.session_matches(pre_key):
                    plaintext = session.decrypt(pre_key.to_any())
                    await self._save(sender_key, session)
                    return plaintext
            # A new session from the sender, on one of our one-time keys (now spent).
            session, plaintext = self.me.account.create_inbound_session(
                vodozemac.Curve25519PublicKey.from_base64(sender_key), pre_key
            )
            await self._save(sender_key, session)
            await self.me.save()
            return plaintext
        message = vodozemac.AnyOlmMessage.normal(b64decode(body))
        for session in sessions:
            try:
                plaintext = session.decrypt(message)
            except vodozemac.OlmDecryptionException:
                continue
            await self._save(sender_key, session)
            return plaintext
        return None
