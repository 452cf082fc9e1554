"""Files a person sent with a message, as backends see them: no Matrix here.

The gateway downloads each file into the agent's home dir before the turn runs
(see :mod:`salon.gateway.attachments`); a backend gets :class:`Attachment`
objects that name the stored file. ``python`` backends read ``path``; the
``http`` backend sends each one inline or as a link (:class:`AttachmentLinks`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Attachment:
    """One stored file of a turn: its name as sent, mime type, size in bytes, path."""

    name: str
    mime_type: str
    size: int
    path: Path

    @property
    def is_image(self) -> bool:
        """An image a vision model could look at."""
        return self.mime_type.startswith("image/")

    def describe(self) -> str:
        """One line naming it: ``[attachment: <name> <mime type> <size> bytes]``."""
        return f"[attachment: {self.name} {self.mime_type} {self.size} bytes]"

    def read(self) -> bytes:
        """The file's bytes (blocking: call it in a thread for big files)."""
        return self.path.read_bytes()

    def data_url(self) -> str:
        """The file as a ``data:`` URL (for image content parts)."""
        encoded = base64.b64encode(self.read()).decode("ascii")
        return f"data:{self.mime_type};base64,{encoded}"

    def to_json(self) -> dict[str, Any]:
        """As stored with the turn (so a re-run after a crash sees the same files)."""
        return {
            "name": self.name,
            "mime_type": self.mime_type,
            "size": self.size,
            "path": str(self.path),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attachment:
        """The attachment a turn stored (KeyError/TypeError/ValueError if not one)."""
        name, mime, size = str(data["name"]), str(data["mime_type"]), int(data["size"])
        return cls(name, mime, size, Path(str(data["path"])))


def chat_content(text: str, attachments: tuple[Attachment, ...], images: bool) -> Any:
    """A user message's ``content`` for a chat-completions model: with ``images``
    (the model takes them), image files as ``image_url`` parts beside the text;
    every other file (all of them without ``images``) as its one-line note.
    Blocking (reads the images): call it in a thread."""
    notes = tuple(a for a in attachments if not (images and a.is_image))
    shown = [a for a in attachments if images and a.is_image]
    text = describe_all(text, notes)
    if not shown:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts.extend({"type": "image_url", "image_url": {"url": a.data_url()}} for a in shown)
    return parts


def describe_all(text: str, attachments: tuple[Attachment, ...]) -> str:
    """``text`` followed by one :meth:`Attachment.describe` line per attachment."""
    lines = [text] if text else []
    lines.extend(a.describe() for a in attachments)
    return "\n".join(lines)


class AttachmentLinks(Protocol):
    """Makes a short-lived URL for an attachment (Salon's API server serves it)."""

    def link(self, attachment: Attachment) -> str | None:
        """The URL, or None when there is no server to fetch it from."""
        ...


DEFAULT_INLINE_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class AttachmentWire:
    """How the ``http`` backend sends files: inline (base64) up to ``inline_max_bytes``,
    bigger ones as ``links`` (None: no server to fetch them from; left out)."""

    inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES
    links: AttachmentLinks | None = None

    def wire(self, attachment: Attachment) -> dict[str, Any]:
        """One entry of the wire format's ``attachments`` (see docs/backends.md)."""
        entry: dict[str, Any] = {
            "name": attachment.name,
            "mime_type": attachment.mime_type,
            "size": attachment.size,
        }
        if attachment.size <= self.inline_max_bytes:
            entry["data"] = base64.b64encode(attachment.read()).decode("ascii")
            return entry
        url = self.links.link(attachment) if self.links is not None else None
        if url is not None:
            entry["url"] = url
        else:
            entry["omitted"] = "too large to send inline, and no API server to link to"
        return entry


_DEFAULT_WIRE = AttachmentWire()
_WIRE: ContextVar[AttachmentWire | None] = ContextVar("salon_attachment_wire", default=None)


def current_wire() -> AttachmentWire:
    """How the running turn's files go over the wire (the gateway sets it)."""
    return _WIRE.get() or _DEFAULT_WIRE


@contextmanager
def wire_context(wire: AttachmentWire) -> Iterator[AttachmentWire]:
    """Make ``wire`` how files go over the wire for the block."""
    token = _WIRE.set(wire)
    try:
        yield wire
    finally:
        _WIRE.reset(token)
