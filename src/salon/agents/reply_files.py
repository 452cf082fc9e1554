"""Files an agent answers with: no Matrix here.

A backend hands a file to its turn with :func:`attach` (a ``python`` plugin may
also just yield or return a :class:`ReplyFile`; an ``http`` service lists them in
its JSON answer's ``attachments``). The turn pipeline collects them in an
:class:`Outbox` it sets for the turn, stores each in the agent's home dir and
sends it after the text (see :mod:`salon.turns.files`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("salon.agents.reply_files")


@dataclass(frozen=True)
class ReplyFile:
    """One file of a reply: its name as the person sees it, mime type and bytes."""

    name: str
    mime_type: str
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """Its size in bytes."""
        return len(self.data)


@dataclass
class Outbox:
    """The files a running turn's backend attached, in order."""

    files: list[ReplyFile] = field(default_factory=list)

    def add(self, file: ReplyFile) -> None:
        """Add ``file`` (TypeError if it is not a :class:`ReplyFile`)."""
        if not isinstance(file, ReplyFile):
            raise TypeError(f"expected a ReplyFile, got {type(file).__name__}")
        self.files.append(file)


_OUTBOX: ContextVar[Outbox | None] = ContextVar("salon_reply_outbox", default=None)


def attach(file: ReplyFile) -> None:
    """Send ``file`` with the running turn's reply (after its text)."""
    outbox = _OUTBOX.get()
    if outbox is None:
        # Only turns that answer in a room collect files; anything else has no room.
        log.warning("reply_file.dropped", name=file.name, reason="no turn collects files here")
        return
    outbox.add(file)


@contextmanager
def outbox_context() -> Iterator[Outbox]:
    """Collect the files attached in the block (set it before the backend's task starts)."""
    outbox = Outbox()
    token = _OUTBOX.set(outbox)
    try:
        yield outbox
    finally:
        _OUTBOX.reset(token)


def from_wire(entry: Any) -> ReplyFile:
    """One entry of an ``http`` answer's ``attachments``: ``name``, ``mime_type`` and
    base64 ``data`` (ValueError naming what is wrong)."""
    if not isinstance(entry, Mapping):
        raise ValueError("an attachment is not an object")
    name, mime, data = entry.get("name"), entry.get("mime_type"), entry.get("data")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("an attachment has no name")
    if mime is None:
        mime = "application/octet-stream"
    if not isinstance(mime, str) or "/" not in mime:
        raise ValueError(f"attachment {name!r}: mime_type {mime!r} is not a mime type")
    if not isinstance(data, str):
        raise ValueError(f"attachment {name!r}: no base64 data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"attachment {name!r}: data is not base64 ({e})") from e
    return ReplyFile(name, mime, raw)
