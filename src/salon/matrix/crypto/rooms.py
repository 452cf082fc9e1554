"""What an identity's device knows of the rooms it sends in: whether each is
encrypted, who is in it, and their devices (looked up once, forgotten when a
/sync answer or transaction says they changed). With a ``store``, a room's
encryption is also kept there once learnt: a restart asking every room again
held the first replies back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from salon._exceptions import NotFoundError
from salon.ids import RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.keys import JSON, Device, parse_device
from salon.store.crypto import CryptoStore


class RoomView:
    """Room settings, members and devices as ``api``'s identity last saw them."""

    def __init__(self, api: MatrixAPI, store: CryptoStore | None = None) -> None:
        self.api = api
        self.store = store  # None: nothing kept (the operator's device follows no events)
        self._unsaved: dict[str, JSON] = {}  # encryption changes not stored yet
        self._encryption: dict[str, JSON | None] = {}  # room → m.room.encryption (None: plain)
        self._members: dict[str, set[str]] = {}
        self._devices: dict[str, list[Device]] = {}

    def note_changes(
        self, data: Mapping[str, Any], *, rooms_known: bool = False, keep: bool = True
    ) -> None:
        """Forget what changed devices lists and room settings or members make stale;
        ``rooms_known``: note settings only of rooms already looked up (an appservice's
        devices see every room's, and would each keep all of them); ``keep``: store the
        settings at :meth:`save_changes` (one device of many seeing the same is enough:
        the store keeps a room's setting once, for all)."""
        lists = data.get("device_lists") or {}
        for user in [*(lists.get("changed") or []), *(lists.get("left") or [])]:
            self._devices.pop(user, None)
        for room_id, room in ((data.get("rooms") or {}).get("join") or {}).items():
            events = [
                *((room.get("state") or {}).get("events") or []),
                *((room.get("timeline") or {}).get("events") or []),
            ]
            for event in events:
                kind = event.get("type") if isinstance(event, dict) else None
                if kind == "m.room.encryption" and isinstance(event.get("content"), dict):
                    if self.store is not None and keep:
                        self._unsaved[room_id] = event["content"]
                    if not rooms_known or room_id in self._encryption:
                        self._encryption[room_id] = event["content"]
                elif kind == "m.room.member":
                    self._members.pop(room_id, None)

    async def save_changes(self) -> None:
        """Store the room settings :meth:`note_changes` took in (a restart reads them)."""
        while self._unsaved and self.store is not None:
            room_id, settings = self._unsaved.popitem()
            await self.store.save_room_encryption(room_id, settings)

    def forget(self, room_id: str) -> None:
        self._encryption.pop(room_id, None)
        self._members.pop(room_id, None)
        self._devices.clear()

    async def encryption(self, room_id: str) -> JSON | None:
        """The room's ``m.room.encryption`` content; None in a plain room."""
        if room_id not in self._encryption:
            known = await self.store.room_encryption(room_id) if self.store else None
            if known is not None:
                self._encryption[room_id] = known[0]
                return known[0]
            try:
                state = await self.api.get_state_event(RoomId(room_id), "m.room.encryption")
            except NotFoundError:
                state = None
            self._encryption[room_id] = state if state and state.get("algorithm") else None
            if self.store is not None:
                await self.store.save_room_encryption(room_id, self._encryption[room_id])
        return self._encryption[room_id]

    async def members(self, room_id: str) -> set[str]:
        """Who is joined or invited (a room key goes to them)."""
        if room_id not in self._members:
            memberships = await self.api.memberships(RoomId(room_id))
            self._members[room_id] = {u for u, m in memberships.items() if m in ("join", "invite")}
        return self._members[room_id]

    async def devices_of(self, users: set[str], me: tuple[str, str]) -> list[Device]:
        """The devices of ``users`` but ``me`` (user id, device id)."""
        unknown = [u for u in users if u not in self._devices]
        if unknown:
            answer = await self.api.query_keys(unknown)
            by_user = answer.get("device_keys") or {}
            for user in unknown:
                entries = by_user.get(user) or {}
                devices = [parse_device(user, d, keys) for d, keys in entries.items()]
                self._devices[user] = [d for d in devices if d is not None]
        return [
            d
            for u in sorted(users)
            for d in self._devices.get(u, [])
            if (d.user_id, d.device_id) != me
        ]
