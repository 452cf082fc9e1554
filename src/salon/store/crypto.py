"""End-to-end encryption state per identity (``crypto_*`` tables).

Holds only pickles (encrypted by the caller with the gateway's pickle key) and
public key material; the store never sees a secret in clear.
"""

from __future__ import annotations

import json
from typing import Any

from salon.store.db import Database
from salon.store.kv import KV
from salon.store.records import now_ms

JSON = dict[str, Any]
# A room's encryption settings, as its identities last learnt them (the room's, not an
# identity's: a restart then sends without asking the homeserver again).
_ROOM_ENCRYPTION = "crypto:room_encryption:"


class CryptoStore:
    """Olm accounts, Olm and Megolm sessions and waiting encrypted events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def room_encryption(self, room_id: str) -> tuple[JSON | None] | None:
        """A room's ``m.room.encryption`` content as last learnt, in a 1-tuple (``(None,)``:
        plain); None if never learnt."""
        value = await KV(self._db).get(_ROOM_ENCRYPTION + room_id)
        if value is None:
            return None
        settings = json.loads(value)
        return (settings if isinstance(settings, dict) else None,)

    async def save_room_encryption(self, room_id: str, settings: JSON | None) -> None:
        """Remember a room's ``m.room.encryption`` content (None: plain)."""
        await KV(self._db).set(_ROOM_ENCRYPTION + room_id, json.dumps(settings))

    async def account(self, user_id: str) -> tuple[str, str, bool] | None:
        """(device id, pickle, published) of the identity's account, if any."""
        row = await self._db.fetchone(
            "SELECT device_id, pickle, published FROM crypto_accounts WHERE user_id = $1",
            user_id,
        )
        return None if row is None else (str(row[0]), str(row[1]), bool(row[2]))

    async def save_account(
        self, user_id: str, device_id: str, pickle: str, published: bool
    ) -> None:
        """Store the account (replacing one of another device: its keys are gone)."""
        await self._db.execute(
            "INSERT INTO crypto_accounts (user_id, device_id, pickle, published)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET"
            " device_id = excluded.device_id, pickle = excluded.pickle,"
            " published = excluded.published",
            user_id,
            device_id,
            pickle,
            1 if published else 0,
        )

    async def cross_signing(self, user_id: str) -> tuple[tuple[str, str, str], str | None] | None:
        """((master, self-signing, user-signing) pickles, the device last signed)."""
        row = await self._db.fetchone(
            "SELECT master, self_signing, user_signing, signed_device"
            " FROM crypto_cross_signing WHERE user_id = $1",
            user_id,
        )
        if row is None:
            return None
        return (str(row[0]), str(row[1]), str(row[2])), None if row[3] is None else str(row[3])

    async def save_cross_signing(
        self, user_id: str, pickles: tuple[str, str, str], signed_device: str | None
    ) -> None:
        """Store the cross-signing keys, and which device they signed (None: none yet)."""
        await self._db.execute(
            "INSERT INTO crypto_cross_signing"
            " (user_id, master, self_signing, user_signing, signed_device)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET"
            " master = excluded.master, self_signing = excluded.self_signing,"
            " user_signing = excluded.user_signing, signed_device = excluded.signed_device",
            user_id,
            *pickles,
            signed_device,
        )

    async def forget_sessions(self, user_id: str) -> None:
        """Drop every session of an identity whose account was replaced."""
        for table in ("crypto_olm_sessions", "crypto_outbound_groups", "crypto_inbound_groups"):
            await self._db.execute(f"DELETE FROM {table} WHERE user_id = $1", user_id)

    async def olm_sessions(self, user_id: str, sender_key: str) -> list[tuple[str, str]]:
        """(session id, pickle) with a device, most recently used first."""
        rows = await self._db.fetchall(
            "SELECT session_id, pickle FROM crypto_olm_sessions"
            " WHERE user_id = $1 AND sender_key = $2 ORDER BY used_at DESC",
            user_id,
            sender_key,
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def save_olm_session(
        self, user_id: str, sender_key: str, session_id: str, pickle: str
    ) -> None:
        """Store an Olm session after each use."""
        await self._db.execute(
            "INSERT INTO crypto_olm_sessions (user_id, sender_key, session_id, pickle, used_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, sender_key, session_id)"
            " DO UPDATE SET pickle = excluded.pickle, used_at = excluded.used_at",
            user_id,
            sender_key,
            session_id,
            pickle,
            now_ms(),
        )

    async def inbound_group(
        self, user_id: str, room_id: str, session_id: str
    ) -> tuple[str, str, str] | None:
        """(sender key, signing key, pickle) of a room key."""
        row = await self._db.fetchone(
            "SELECT sender_key, signing_key, pickle FROM crypto_inbound_groups"
            " WHERE user_id = $1 AND room_id = $2 AND session_id = $3",
            user_id,
            room_id,
            session_id,
        )
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    async def add_inbound_group(
        self,
        user_id: str,
        room_id: str,
        session_id: str,
        keys: tuple[str, str],
        pickle: str,
    ) -> bool:
        """Keep a room key (``keys``: sender curve25519, signing ed25519); the first
        copy wins. Returns whether it was new."""
        changed = await self._db.execute(
            "INSERT INTO crypto_inbound_groups"
            " (user_id, room_id, session_id, sender_key, signing_key, pickle)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (user_id, room_id, session_id) DO NOTHING",
            user_id,
            room_id,
            session_id,
            keys[0],
            keys[1],
            pickle,
        )
        return changed > 0

    async def outbound_group(self, user_id: str, room_id: str) -> tuple[str, str, int] | None:
        """(pickle, shared-with JSON, created at ms) of the room's sending session."""
        row = await self._db.fetchone(
            "SELECT pickle, shared_with, created_at FROM crypto_outbound_groups"
            " WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
        )
        return None if row is None else (str(row[0]), str(row[1]), int(row[2]))

    async def save_outbound_group(
        self, user_id: str, room_id: str, pickle: str, shared_with: str, created_at: int
    ) -> None:
        """Store the room's sending session (after each message)."""
        await self._db.execute(
            "INSERT INTO crypto_outbound_groups"
            " (user_id, room_id, pickle, shared_with, created_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (user_id, room_id) DO UPDATE SET pickle = excluded.pickle,"
            " shared_with = excluded.shared_with, created_at = excluded.created_at",
            user_id,
            room_id,
            pickle,
            shared_with,
            created_at,
        )

    async def drop_outbound_group(self, user_id: str, room_id: str) -> None:
        """Discard the room's sending session (membership changed: rotate)."""
        await self._db.execute(
            "DELETE FROM crypto_outbound_groups WHERE user_id = $1 AND room_id = $2",
            user_id,
            room_id,
        )

    async def add_pending(
        self, user_id: str, event_id: str, room_id: str, session_id: str, event: str
    ) -> None:
        """Keep an event that cannot be decrypted yet."""
        await self._db.execute(
            "INSERT INTO crypto_pending (user_id, event_id, room_id, session_id, event,"
            " received_at) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (user_id, event_id) DO NOTHING",
            user_id,
            event_id,
            room_id,
            session_id,
            event,
            now_ms(),
        )

    async def pending_for(self, user_id: str, room_id: str, session_id: str) -> list[str]:
        """The waiting events (JSON) a newly arrived room key may open, oldest first."""
        rows = await self._db.fetchall(
            "SELECT event FROM crypto_pending WHERE user_id = $1 AND room_id = $2"
            " AND session_id = $3 ORDER BY received_at",
            user_id,
            room_id,
            session_id,
        )
        return [str(r[0]) for r in rows]

    async def pending_older_than(self, user_id: str, before_ms: int) -> list[tuple[str, str]]:
        """(event id, room id) of events waiting since before ``before_ms``."""
        rows = await self._db.fetchall(
            "SELECT event_id, room_id FROM crypto_pending WHERE user_id = $1 AND received_at < $2",
            user_id,
            before_ms,
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def pending_count(self, user_id: str) -> int:
        """How many events wait for their room key."""
        value = await self._db.fetchval(
            "SELECT COUNT(*) FROM crypto_pending WHERE user_id = $1", user_id
        )
        return int(value or 0)

    async def drop_pending(self, user_id: str, event_id: str) -> None:
        """Forget a waiting event (decrypted, or given up on)."""
        await self._db.execute(
            "DELETE FROM crypto_pending WHERE user_id = $1 AND event_id = $2", user_id, event_id
        )
