"""Appservice mode: how transactions are known, kept while starting, and missed.

- :func:`txn_key`: a transaction's identity (its id and a digest of its events).
- :class:`TxnLog`: where admitted ids are recorded and early transactions are parked
  (``store.appservice_txns``). A transaction pushed while the gateway is still starting
  is parked durably and answered 200 at once, then admitted in arrival order once the
  gateway is ready. Held unanswered instead, a start of minutes (a thousand agents
  provisioned) made Synapse time out after 60 s, mark the appservice down and back off.
- :class:`GapWatch`: Synapse numbers transactions from one sequence and, at the end of
  a recovery from such a "down", can leave one transaction unsent for good: it was
  created while the appservice was down, just after the recoverer found nothing left
  to send. The next one arrives with a number one higher than expected; the watch
  notices the number no process of ours took, and the source catches up (reads the
  rooms back) to find its events. Other appservices on the same homeserver take
  numbers from the same sequence, so a gap may be theirs: catch-ups started by gaps
  are therefore spaced out (:data:`GAP_CATCHUP_INTERVAL_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from salon._exceptions import is_transient
from salon.metrics import APPSERVICE_SET_ASIDE
from salon.store.appservice import ParkedTxn

log = structlog.get_logger("salon.matrix.appservice")

GAP_CATCHUP_INTERVAL_S = 60.0
"""At most one catch-up started by gaps in this many seconds (the next waits)."""
GAP_WINDOW_MS = 10 * 60 * 1000
"""Numbers taken longer ago than this do not count (the homeserver may have restarted
and numbered again from 1 since)."""


class TxnLog(Protocol):
    """Where admitted transaction ids are kept (``store.appservice_txns``)."""

    async def seen(self, txn_id: str) -> bool:
        """Whether the transaction was admitted before."""

    async def record(self, txn_id: str, seq: int | None = None) -> None:
        """Remember an admitted transaction (``seq``: the homeserver's number)."""

    async def received(self, after: int, before: int, since: int) -> int:
        """How many numbers between ``after`` and ``before`` (both excluded) any process
        of ours took at ``since`` (ms) or later."""

    async def park(self, txn_id: str, seq: int | None, body: str) -> bool:
        """Keep a transaction pushed before the gateway is ready (False: kept already)."""

    async def parked(self) -> list[ParkedTxn]:
        """The transactions kept and still due (not set aside), in arrival order."""

    async def failed(self, txn_id: str, reason: str, max_tries: int) -> bool:
        """Count a failed admission of a kept transaction; True: set aside now (its
        ``max_tries``-th failure), kept for the operator and no longer due."""

    async def unpark(self, txn_id: str) -> None:
        """Forget a kept transaction once admitted."""


def txn_key(hs_token: str, txn_id: str, events: Sequence[object]) -> str:
    """How a transaction is kept: its id under its registration's token (hashed), and
    a digest of its events' ids. The homeserver numbers transactions per registration
    and starts again at 1 for a new one; Synapse on SQLite also starts again after a
    restart (the next id is one past the highest *unsent* one, usually none). A retry
    carries the same events under the same id, so only that is answered without work;
    a reused id with other events is a new transaction (the inbox ignores an event
    admitted before, so admitting one twice is harmless; dropping one is not)."""
    ids = "\n".join(str(e.get("event_id")) for e in events if isinstance(e, dict))
    digest = hashlib.sha256(ids.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{hashlib.sha256(hs_token.encode()).hexdigest()[:16]}:{txn_id}:{digest}"


def txn_seq(txn_id: str) -> int | None:
    """The homeserver's number in a transaction id (Synapse's are integers), or None."""
    ok = txn_id.isascii() and txn_id.isdigit() and len(txn_id) < 19
    return int(txn_id) if ok else None


class GapWatch:
    """Notices a transaction number that never came (see the module's text)."""

    def __init__(self, txns: TxnLog, interval_s: float = GAP_CATCHUP_INTERVAL_S) -> None:
        self._txns = txns
        self._interval_s = interval_s
        self._last: int | None = None
        self._last_catchup: float | None = None
        self.gaps = 0  # gaps noticed (numbers no process of ours took)

    async def missed(self, seq: int | None) -> bool:
        """Whether numbers before ``seq`` (just taken) never came to any process of ours.
        A number lower than the last one: the homeserver numbered again (a restart)."""
        if seq is None:
            return False
        last, self._last = self._last, seq if self._last is None else max(self._last, seq)
        if last is None or seq <= last + 1:
            if last is not None and seq < last:
                self._last = seq  # numbered again from lower down
            return False
        since = int(time.time() * 1000) - GAP_WINDOW_MS
        if await self._txns.received(last, seq, since) >= seq - last - 1:
            return False  # another gateway behind the same URL took them
        self.gaps += 1
        return True

    def delay_s(self) -> float:
        """How long a catch-up booked now waits (spaced out), and books it (call it
        only when booking one: not again while one is booked)."""
        now = time.monotonic()
        last = self._last_catchup
        start = now if last is None else max(now, last + self._interval_s)
        self._last_catchup = start
        return start - now


PARKED_MAX_TRIES = 3
"""Failed admissions (each failing a start) after which a parked transaction is set
aside, so that one that always fails (a bug, a poisoned event) cannot stop every
start; transient failures (the store or the homeserver down) do not count."""
LEFTOVER_AGE_MS = 60_000
"""Parked transactions this old, left by a gateway that died while starting, are
admitted by a running one (behind one URL, any process admits into the shared inbox)."""


async def drain(
    txns: TxnLog,
    lock: asyncio.Lock | None,
    take: Callable[[ParkedTxn], Awaitable[None]],
    *,
    older_than_ms: int | None = None,
) -> int:
    """Admit parked transactions (``take``) in arrival order and forget each; the lock
    (None: the caller holds it) is taken per transaction, so one pushed meanwhile is
    parked (after them) instead of waiting. ``older_than_ms``: only those parked
    longer ago, once (leftovers); otherwise until none is left. Returns how many.
    A failed one raises (it is tried again later, in order) unless that failure was
    its :data:`PARKED_MAX_TRIES`-th: then it is set aside and the rest go on."""
    done = 0
    while True:
        kept = await txns.parked()
        if older_than_ms is not None:
            cut = int(time.time() * 1000) - older_than_ms
            kept = [p for p in kept if p.at <= cut]
        if not kept:
            return done
        for parked in kept:
            async with lock or contextlib.nullcontext():
                try:
                    await take(parked)
                except Exception as e:
                    if not await _given_up(txns, parked, e):
                        raise
                    continue
                await txns.unpark(parked.txn_id)
            done += 1
        if older_than_ms is not None:
            return done


async def _given_up(txns: TxnLog, parked: ParkedTxn, error: Exception) -> bool:
    """Count a failed admission (not a transient one); True once it is set aside."""
    if is_transient(error):
        return False  # the store or the homeserver down: no fault of the transaction
    reason = f"{type(error).__name__}: {error}"[:1000]
    tries = parked.tries + 1
    if not await txns.failed(parked.txn_id, reason, PARKED_MAX_TRIES):
        log.warning("appservice.parked_failed", txn_id=parked.txn_id, tries=tries, error=reason)
        return False
    APPSERVICE_SET_ASIDE.inc()
    log.warning(
        "appservice.parked_set_aside",
        txn_id=parked.txn_id,
        seq=parked.seq,
        tries=tries,
        error=reason,
    )
    return True
