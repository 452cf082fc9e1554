"""Appservice transactions → each identity's encryption device.

A transaction carries, besides room events, what a client would read in /sync for
each of the appservice's devices: to-device messages (room keys), device list
changes and one-time key counts. Each identity's :class:`DeviceCrypto` is fed its
part before the transaction's events are opened, so a room key and the message it
opens may come in the same transaction. An event whose key has not come is kept in
the store (before the transaction is answered) and admitted once it does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import structlog

from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import DeviceCrypto
from salon.matrix.crypto.appservice import shared_changes, sync_view
from salon.matrix.events import InboundEvent, Invite
from salon.matrix.source import EventSink
from salon.metrics import DECRYPTION_FAILURES

log = structlog.get_logger("salon.matrix.appservice")


class TransactionKeys:
    """Feeds transactions' key material to the identities' devices (``apis``: the
    identities served, kept up to date by their owner)."""

    def __init__(self, apis: Mapping[UserId, MatrixAPI]) -> None:
        self._apis = apis
        # Identities that kept events aside for their key: swept until none wait, so
        # one whose key never comes is given up on even if no transaction follows.
        self._watched: set[UserId] = set()

    def _crypto(self, user_id: UserId) -> DeviceCrypto | None:
        crypto = getattr(self._apis.get(user_id), "crypto", None)
        return crypto if isinstance(crypto, DeviceCrypto) else None

    async def take(
        self, body: Mapping[str, Any], readers: Collection[UserId]
    ) -> list[tuple[UserId, list[InboundEvent]]]:
        """Hand each device its part of ``body``; returns the kept events that keys
        in it opened, by identity. ``readers`` (identities receiving events of this
        transaction) also give up on events that waited too long."""
        changes = shared_changes(body)
        opened: list[tuple[UserId, list[InboundEvent]]] = []
        kept = False  # rooms' settings stored once, by the first device: one row each
        for user_id in list(self._apis):
            crypto = self._crypto(user_id)
            if crypto is None:
                continue
            if changes is not None:
                crypto.note_changes(changes, rooms_known=True, keep=not kept)
                if not kept:
                    await crypto.save_changes()
                    kept = True
            view = sync_view(body, user_id, crypto.device_id)
            if view is None and user_id not in readers:
                continue  # nothing for it: no store work per identity per transaction
            events = await crypto.process_sync(view or {})
            if events:
                opened.append((user_id, events))
        return opened

    def sweep_interval_s(self) -> float:
        """How often :meth:`sweep` is worth running (a quarter of the shortest wait)."""
        waits = [c.settings.undecryptable_wait_s for c in map(self._crypto, self._apis) if c]
        return min([30.0, *(w / 4 for w in waits)]) if waits else 30.0

    async def sweep(self) -> list[tuple[UserId, list[InboundEvent]]]:
        """Give up on kept events that waited too long (logged, counted); returns any
        that opened meanwhile, by identity."""
        opened: list[tuple[UserId, list[InboundEvent]]] = []
        for user_id in sorted(self._watched):
            crypto = self._crypto(user_id)
            if crypto is None:
                self._watched.discard(user_id)
                continue
            events = await crypto.process_sync({})
            if events:
                opened.append((user_id, events))
            if await crypto.waiting() == 0:
                self._watched.discard(user_id)
        return opened

    async def open(self, identity: UserId, batch: list[InboundEvent]) -> list[InboundEvent]:
        """``batch`` with its encrypted events opened (or kept aside until their key
        comes); without a device they are dropped, logged and counted."""
        if not any(e.type == "m.room.encrypted" for e in batch):
            return batch
        crypto = self._crypto(identity)
        if crypto is not None:
            self._watched.add(identity)
            return await crypto.decrypt(batch)
        kept = []
        for event in batch:
            if event.type != "m.room.encrypted":
                kept.append(event)
                continue
            DECRYPTION_FAILURES.labels(identity=identity, reason="no_device").inc()
            log.warning(
                "crypto.undecryptable_dropped",
                event_id=event.event_id,
                room_id=event.room_id,
                reason="no_device",
            )
        return kept


class OpeningSink:
    """A sink that opens encrypted events first, as transactions are: what the
    catch-up reads back is admitted the same way as what was pushed."""

    def __init__(self, keys: TransactionKeys, sink: EventSink) -> None:
        self._keys, self._sink = keys, sink

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        opened = await self._keys.open(identity, list(events))
        if opened:
            await self._sink.admit(identity, opened)

    async def invited(self, invite: Invite) -> None:
        await self._sink.invited(invite)
