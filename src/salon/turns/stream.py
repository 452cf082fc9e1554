"""A streamed reply as Matrix events: first chunk a message, then bounded edits.

The backend's chunks are pumped into a queue by their own task, so edits go
out on time even when the backend pauses, and a reply that arrives whole (the
echo backend) becomes one message with no edits. Every send has a transaction
id derived from the turn and the part, so a turn re-run after a crash updates
the same events instead of posting a second reply.

Ordering: in-between edits are best effort (a failed one is superseded by the
next); the first message and the final edit wait out outages. A turn re-run
after a crash always ends with the final edit, which no earlier send of the
turn can follow: the final text is stored before it is first sent, so a re-run
re-sends that text (same transaction id) instead of streaming anew.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from salon.ids import EventId, RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.delivery import Delivery
from salon.metrics import EDITS_SENT, REPLIES_SENT
from salon.turns.replies import ReplyTo, reply_content, txn_id

_END = object()
# After the first chunk, wait this long for more before showing anything, so a
# reply that arrives whole is sent once instead of as a message plus an edit.
FIRST_CHUNK_GRACE_S = 0.05
IDLE_WAIT_S = 20.0
MIN_WAIT_S = 0.01
QUEUE_CHUNKS = 256


@dataclass(frozen=True)
class StreamLimits:
    """Bounds on how a reply is streamed."""

    edit_interval_s: float = 1.0
    max_edits: int = 20
    max_message_chars: int = 16000
    max_reply_chars: int = 20000  # the backend is stopped there and the reply cut


@dataclass(frozen=True)
class ReplyTarget:
    """Where one turn's reply goes: the room, what it answers, whose voice it is, and
    the turn's id, which its transaction ids derive from."""

    room_id: RoomId
    reply_to: ReplyTo
    agent_id: str
    txn_key: str


@dataclass(frozen=True)
class ResumePoint:
    """What an earlier run of the same turn left: the first message's id, if the
    ledger knows it, and whether this is a re-run at all."""

    first_id: EventId | None = None
    rerun: bool = False


def split_message(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` chars, at a newline or space if possible."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = max(text.rfind("\n", 0, limit), text.rfind(" ", 0, limit))
        if cut < limit // 2:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n ") if cut < limit else text[cut:]
    pieces.append(text)
    return pieces


class ReplyStream:
    """Sends one turn's reply: first message, time- and count-bounded edits, final text."""

    def __init__(
        self,
        api: MatrixAPI,
        target: ReplyTarget,
        limits: StreamLimits,
        *,
        delivery: Delivery | None = None,
        on_first: Callable[[EventId, bool], Any] | None = None,
        resume: ResumePoint | None = None,
    ) -> None:
        resume = resume or ResumePoint()
        self.api = api
        self.room_id = target.room_id
        self.reply_to = target.reply_to
        self.agent_id = target.agent_id
        self.limits = limits
        self.delivery = delivery or Delivery()
        self.text = ""
        self.cut = False  # the reply reached max_reply_chars and was cut there
        # On a re-run the first message may exist already (the ledger knows its id).
        self.first_id: EventId | None = resume.first_id
        self.edits_sent = 0
        self._shown: str | None = None
        self._last_send = 0.0
        self._on_first = on_first
        self._clock: Callable[[], float] = time.monotonic  # a test may set its own
        self._first_chunk_at: float | None = None
        # A re-run cannot know what the crashed run showed last: it always ends on the
        # final edit, so that edit is the newest version a client shows.
        self.resumed = resume.rerun or resume.first_id is not None
        # What transaction ids derive from: the turn's id.
        self.txn_key = target.txn_key

    async def run(self, chunks: AsyncIterator[str]) -> str:
        """Consume the backend stream, showing progress; returns the whole text."""
        # Bounded: a backend faster than the room is held back, and stopped at the cut.
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=QUEUE_CHUNKS)

        async def pump() -> None:
            try:
                async for chunk in chunks:
                    await queue.put(chunk)
                await queue.put(_END)
            except Exception as e:
                await queue.put(e)

        producer = asyncio.create_task(pump(), name=f"backend:{self.agent_id}")
        try:
            while True:
                item = await self._next(queue)
                if isinstance(item, Exception):
                    raise item
                if item is _END:
                    return self.text
                if isinstance(item, str):
                    self.text += item
                    if len(self.text) >= self.limits.max_reply_chars:
                        self.text = self.text[: self.limits.max_reply_chars]
                        self.cut = True
                        return self.text
                await self._maybe_show()
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def _next(self, queue: asyncio.Queue[object]) -> object:
        """The next item, or None once it is time to show what there is."""
        if not queue.empty():
            return queue.get_nowait()  # no timer (a whole reply is queued at once)
        try:
            # A cancel scope, not wait_for: that wraps each get in a task of its own.
            async with asyncio.timeout(self._wait_for_next()):
                return await queue.get()
        except TimeoutError:
            return None

    def _wait_for_next(self) -> float:
        if self._shown == self.text or not self._edits_left():
            return IDLE_WAIT_S  # nothing (more) to show: just wait for the backend
        if self.first_id is None:
            return FIRST_CHUNK_GRACE_S
        # Never 0: wait_for(get(), 0) times out before the queue is even looked at.
        due = self._last_send + self.limits.edit_interval_s - self._clock()
        return max(MIN_WAIT_S, due)

    def _edits_left(self) -> bool:
        # One edit is kept for the final text.
        return self.first_id is None or self.edits_sent + 1 < self.limits.max_edits

    async def _maybe_show(self) -> None:
        if not self.text or self._shown == self.text:
            return
        now = self._clock()
        if self.first_id is None:
            if self._first_chunk_at is None:
                self._first_chunk_at = now
            if now - self._first_chunk_at < FIRST_CHUNK_GRACE_S:
                return
            await self._send_first(self._head(self.text), final=False)
            return
        if not self._edits_left():
            return
        if now - self._last_send < self.limits.edit_interval_s:
            return
        self.edits_sent += 1
        await self._edit(self._head(self.text), f"edit-{self.edits_sent}", final=False, wait=False)

    async def finish(self, text: str, *, notice: bool = False) -> EventId:
        """Show ``text`` as the final reply (split if long); returns the first event's id."""
        pieces = split_message(text, self.limits.max_message_chars)
        single = len(pieces) == 1
        if self.first_id is None:
            await self._send_first(pieces[0], final=single, notice=notice)
            if self.resumed:
                # The first send may have been a repeat of the crashed run's (same
                # transaction id → its old, partial content): make the text final.
                await self._edit(pieces[0], "final", final=single, notice=notice)
        elif self.resumed or self._shown != pieces[0] or single:
            await self._edit(pieces[0], "final", final=single, notice=notice)
        for i, piece in enumerate(pieces[1:], start=1):
            content = reply_content(
                self.reply_to,
                self.agent_id,
                piece,
                notice=notice,
                final=i == len(pieces) - 1,
                turn=self.txn_key,
            )
            await self.delivery.send(
                self.api,
                self.room_id,
                "m.room.message",
                content,
                txn_id=txn_id(self.txn_key, self.agent_id, f"part-{i}"),
            )
        assert self.first_id is not None
        return self.first_id

    def _head(self, text: str) -> str:
        return text[: self.limits.max_message_chars]

    async def _send_first(self, body: str, *, final: bool, notice: bool = False) -> None:
        content = reply_content(
            self.reply_to, self.agent_id, body, final=final, notice=notice, turn=self.txn_key
        )
        self.first_id = await self.delivery.send(
            self.api,
            self.room_id,
            "m.room.message",
            content,
            txn_id=txn_id(self.txn_key, self.agent_id, 0),
        )
        self._shown = body
        self._last_send = self._clock()
        REPLIES_SENT.labels(agent=self.agent_id).inc()
        if self._on_first is not None:
            await self._on_first(self.first_id, final)

    async def _edit(
        self, body: str, part: str, *, final: bool, notice: bool = False, wait: bool = True
    ) -> None:
        assert self.first_id is not None
        new = reply_content(
            self.reply_to, self.agent_id, body, final=final, notice=notice, turn=self.txn_key
        )
        new.pop("m.relates_to", None)
        content = {
            "msgtype": new["msgtype"],
            "body": f"* {body}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": self.first_id},
        }
        send = self.delivery.send if wait else self.delivery.try_send
        sent = await send(
            self.api,
            self.room_id,
            "m.room.message",
            content,
            txn_id=txn_id(self.txn_key, self.agent_id, part),
        )
        if sent is not None:
            self._shown = body
            EDITS_SENT.labels(agent=self.agent_id).inc()
        self._last_send = self._clock()
