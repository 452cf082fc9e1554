"""The file of a media message, stored for an agent's turn.

Each file goes to ``<agent home>/attachments/<session>/<event>-<name>``: per
agent, per session, named by the event, so handling the same event again (a
crash before its turn was ledgered) finds the file already whole and does not
fetch it twice. The turn then carries the :class:`Attachment` in its ledgered
spec, so a re-run of the turn hands the backend the same file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from salon import responses
from salon._exceptions import ForbiddenError, MatrixError, NotFoundError, is_transient
from salon.agents.attachments import Attachment
from salon.config.models import AttachmentsConfig
from salon.ids import AgentId
from salon.matrix.api import MatrixAPI
from salon.matrix.download import download_media
from salon.matrix.events import InboundEvent
from salon.matrix.media import MediaError, MediaRef, MediaTooLargeError, parse_media, safe_name
from salon.metrics import ATTACHMENTS

log = structlog.get_logger("salon.gateway.attachments")

ATTACHMENTS_DIR = "attachments"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Refused:
    """A file that will not reach the agent: what to tell the sender, and the reason
    stored with the event (``inbox.reason``)."""

    notice: str
    reason: str


def turn_text(event: InboundEvent) -> str:
    """What the agent reads as the message: the caption of a file, else the body."""
    try:
        media = parse_media(event.content)
    except MediaError:
        return event.body
    return event.body if media is None else media.caption


def stored_path(home: Path, session_key: str, event_id: str, name: str) -> Path:
    """Where a file of ``event_id`` in ``session_key`` is kept in an agent's home."""
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:12]
    session = f"{_UNSAFE.sub('_', session_key)[:60]}-{digest}"
    event = _UNSAFE.sub("_", event_id.lstrip("$"))[:48]
    return home / ATTACHMENTS_DIR / session / f"{event}-{safe_name(name) or 'file'}"


class AttachmentFetcher:
    """Downloads media messages' files for agents (``homes``: each agent's home dir)."""

    def __init__(
        self,
        config: AttachmentsConfig,
        homes: Callable[[AgentId], Path],
        apis: Mapping[AgentId, MatrixAPI],
        locale: str = "en",
    ) -> None:
        self.config = config  # a reload swaps it
        self.homes = homes
        self.apis = apis
        self.locale = locale

    async def fetch(
        self, media: MediaRef, event: InboundEvent, agent_id: AgentId, session_key: str
    ) -> Attachment:
        """The stored file (downloaded now, or already there from an earlier try).

        Raises :class:`MediaTooLargeError` / :class:`MediaError` (see :meth:`refusal`)
        and transient Matrix errors (the event is tried again later)."""
        dest = stored_path(self.homes(agent_id), session_key, event.event_id, media.name)
        if dest.is_file():
            ATTACHMENTS.labels(outcome="reused").inc()
            size = dest.stat().st_size
        else:
            size = await download_media(self.apis[agent_id], media, dest, self.config.max_bytes)
            ATTACHMENTS.labels(outcome="stored").inc()
            log.info("attachment.stored", event_id=event.event_id, agent=agent_id, size=size)
        return Attachment(media.name, media.mime_type, size, dest)

    def refusal(self, error: MatrixError, name: str, label: str, locale: str) -> Refused:
        """What the sender is told, and the stored reason, when ``error`` kept the file
        from the agent. A transient error is raised again instead (tried later)."""
        if is_transient(error):
            raise error
        if isinstance(error, MediaTooLargeError):
            ATTACHMENTS.labels(outcome="too_large").inc()
            notice = responses.text(
                "attachment_too_large",
                locale,
                name=name,
                size=error.size,
                limit=error.limit,
                label=label,
            )
            return Refused(notice, "attachment_too_large")
        ATTACHMENTS.labels(outcome="failed").inc()
        log.warning("attachment.failed", name=name, error=str(error))
        reason = _reason(error)
        notice = responses.text("attachment_failed", locale, name=name, reason=reason, label=label)
        return Refused(notice, f"attachment_failed: {reason}")


def _reason(error: MatrixError) -> str:
    if isinstance(error, MediaError):
        return str(error)
    if isinstance(error, NotFoundError):
        return "not found on the homeserver"
    if isinstance(error, ForbiddenError):
        return "the homeserver refused it"
    return type(error).__name__
