"""Which identities keep their Olm account in memory.

An account (its keys and unused one-time keys) is only needed to open or start an
Olm session (a room key coming in, or going out to a new device) and to publish
keys; most identities of a large gateway do neither for hours. The most recently
used ones stay in memory; the others are let go and read back from the store (it
has every change: see :class:`~salon.matrix.crypto.olm.OwnDevice`) when next needed.

Making a device's keys (an account, its one-time keys, the cross-signing keys, their
pickles and upload bodies) takes some 60 kB for a moment; a thousand identities doing
it at once at a cold start left ~45 MB of heap behind after it was freed. A few at a
time leave a few MB (bench/scale.py ``--tracemalloc``; docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Protocol

RESIDENT_ACCOUNTS = 64
"""Accounts kept in memory by default (each a few kB, outside Python's heap)."""
SETUPS_AT_ONCE = 32
"""Devices whose keys are made or read at the same time (the homeserver is the
bottleneck of a cold start long before this is)."""


class Evictable(Protocol):
    def evict(self) -> bool:
        """Let the account go; False (kept) while it is in use."""


class ResidentAccounts:
    """The ``capacity`` accounts used last stay; using one more lets the oldest idle
    one go. ``setups``: held while a device's keys are made or read (at most
    :data:`SETUPS_AT_ONCE` at once)."""

    def __init__(self, capacity: int = RESIDENT_ACCOUNTS, setups: int = SETUPS_AT_ONCE) -> None:
        if capacity < 1 or setups < 1:
            raise ValueError("at least one account stays in memory, one setup at a time")
        self.capacity = capacity
        self.setups = asyncio.Semaphore(setups)
        self._used: OrderedDict[Evictable, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._used)

    def used(self, device: Evictable) -> None:
        """``device``'s account is in memory and was just used."""
        self._used[device] = None
        self._used.move_to_end(device)
        excess = len(self._used) - self.capacity
        for old in list(self._used)[:-1]:
            if excess <= 0:
                break
            if old.evict():
                del self._used[old]
                excess -= 1

    def forget(self, device: Evictable) -> None:
        self._used.pop(device, None)
