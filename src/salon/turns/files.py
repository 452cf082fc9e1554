"""Files a turn answers with: kept on disk and in the ledger, then uploaded and sent
once each, after the reply's text.

The backend's files (:mod:`salon.agents.reply_files`) are written to
``<agent home>/attachments/replies/`` and named in the turn's outcome before
anything is sent; the outcome is stored (see :func:`~salon.turns.outcomes.must_store`).
Each file's upload result and then its event id are stored as they come, so a re-run
after a crash neither uploads a sent file again nor sends it twice: the message has
a transaction id derived from the turn and the file's index, and a recorded event
id skips it altogether. A file over ``max_bytes`` is not sent; the reply says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from salon import responses
from salon._exceptions import MatrixError
from salon.agents.attachments import Attachment, describe_all
from salon.agents.reply_files import ReplyFile
from salon.agents.runtime import AgentRuntime
from salon.ids import AgentId, EventId
from salon.matrix.api import MatrixAPI
from salon.matrix.delivery import Delivery
from salon.matrix.media import safe_name
from salon.matrix.upload import msgtype_for, upload_for_room
from salon.metrics import REPLY_FILES
from salon.store import Store
from salon.turns.replies import reply_content, txn_id
from salon.turns.spec import REPLY_KINDS, Outcome, OutcomeState, ReplyFileState, TurnSpec

log = structlog.get_logger("salon.turns.files")

REPLIES_DIR = "replies"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


def reply_file_path(home: Path, turn_id: str, index: int, name: str) -> Path:
    """Where file ``index`` of a turn's reply is kept in its agent's home."""
    turn = hashlib.sha256(turn_id.encode()).hexdigest()[:16]
    return home / "attachments" / REPLIES_DIR / f"{turn}-{index}-{safe_name(name) or 'file'}"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(part, path)  # the name only ever holds a whole file


def recorded_text(outcome: Outcome) -> str:
    """The reply as the session keeps it: its text, then a line per file it sent (so
    the model later knows the files went out)."""
    return describe_all(outcome.text, tuple(f.attachment for f in outcome.files))


class ReplyFiles:
    """Keeps and sends the files of turns' replies (``max_bytes``: the cap per file)."""

    def __init__(
        self,
        store: Store,
        agents: Mapping[AgentId, AgentRuntime],
        delivery: Delivery,
        locale: str = "en",
    ) -> None:
        self.store = store
        self.agents = agents
        self.delivery = delivery
        self.locale = locale
        self.max_bytes = DEFAULT_MAX_BYTES  # the composition root sets attachments.max_bytes
        # The newest recorded state of each turn's files while they are being sent.
        self._progress: dict[tuple[str, AgentId], Outcome] = {}

    def progress(self, spec: TurnSpec, outcome: Outcome) -> Outcome:
        """``outcome`` with its files as far as they got (what a shutdown must keep)."""
        return self._progress.pop(spec.key, outcome)

    async def outcome(self, spec: TurnSpec, text: str, files: Sequence[ReplyFile]) -> Outcome:
        """A replied turn's outcome: ``text``, a line per file over the cap, and the
        others stored on disk (only a turn that answers in a room sends files)."""
        if files and spec.kind not in REPLY_KINDS:
            log.warning("reply_files.dropped", turn=spec.turn_id, kind=spec.kind.value)
            files = ()
        runtime = self.agents[spec.agent_id]
        kept: list[ReplyFileState] = []
        notes: list[str] = []
        for index, file in enumerate(files):
            if file.size > self.max_bytes:
                REPLY_FILES.labels(agent=spec.agent_id, outcome="too_large").inc()
                notes.append(
                    responses.text(
                        "reply_file_too_large",
                        self.locale,
                        label=runtime.label,
                        name=file.name,
                        size=file.size,
                        limit=self.max_bytes,
                    )
                )
                continue
            path = reply_file_path(runtime.profile.home, spec.turn_id, index, file.name)
            await asyncio.to_thread(_write, path, file.data)
            name = safe_name(file.name) or "file"
            kept.append(ReplyFileState(Attachment(name, file.mime_type, file.size, path)))
        text = "\n\n".join(t for t in (text, *notes) if t)
        if not text and not kept:
            text = responses.text("empty_reply", self.locale)
        return Outcome(OutcomeState.REPLIED, text, files=tuple(kept))

    async def send(self, spec: TurnSpec, outcome: Outcome, api: MatrixAPI) -> EventId | None:
        """Upload and send each file not sent yet, in order; returns the first one's
        event. A file the homeserver refuses gets a notice in its place."""
        files = list(outcome.files)
        try:
            for index, state in enumerate(files):
                if state.event_id is not None:
                    continue  # sent before a crash
                try:
                    files[index] = await self._send_one(spec, outcome, files, index, api)
                    REPLY_FILES.labels(agent=spec.agent_id, outcome="sent").inc()
                except (MatrixError, OSError) as e:  # permanent: retry() waited out the rest
                    files[index] = await self._refused(spec, state, index, api, e)
                await self._record(spec, outcome, files)
        except Exception:
            self._progress.pop(spec.key, None)  # kept only for a shutdown (cancellation)
            raise
        self._progress.pop(spec.key, None)
        first = next((f.event_id for f in files if f.event_id), None)
        return EventId(first) if first else None

    async def _send_one(
        self,
        spec: TurnSpec,
        outcome: Outcome,
        files: list[ReplyFileState],
        index: int,
        api: MatrixAPI,
    ) -> ReplyFileState:
        state = files[index]
        file = state.attachment
        if state.media is None:
            data = await asyncio.to_thread(file.read)

            async def upload() -> dict[str, object]:
                return await upload_for_room(api, spec.room_id, data, file.mime_type, file.name)

            state = replace(state, media=await self.delivery.retry(api, upload))
            files[index] = state
            # Kept before the message goes: a re-run sends this upload, not another one.
            await self._record(spec, outcome, files)
        content = reply_content(spec.reply_to, spec.agent_id, file.name, turn=spec.turn_id)
        content["msgtype"] = msgtype_for(file.mime_type)
        content["filename"] = file.name
        content["info"] = {"mimetype": file.mime_type, "size": file.size}
        content.update(state.media or {})
        event_id = await self.delivery.send(
            api,
            spec.room_id,
            "m.room.message",
            content,
            txn_id=txn_id(spec.turn_id, spec.agent_id, f"file-{index}"),
        )
        return replace(state, event_id=event_id)

    async def _refused(
        self,
        spec: TurnSpec,
        state: ReplyFileState,
        index: int,
        api: MatrixAPI,
        error: Exception,
    ) -> ReplyFileState:
        REPLY_FILES.labels(agent=spec.agent_id, outcome="failed").inc()
        name = state.attachment.name
        log.warning("reply_file.failed", turn=spec.turn_id, name=name, error=str(error))
        reason = str(error) if isinstance(error, MatrixError) else type(error).__name__
        label = self.agents[spec.agent_id].label
        notice = responses.text(
            "reply_file_failed", self.locale, label=label, name=name, reason=reason
        )
        content = reply_content(
            spec.reply_to, spec.agent_id, notice, notice=True, turn=spec.turn_id
        )
        event_id = await self.delivery.send(
            api,
            spec.room_id,
            "m.room.message",
            content,
            txn_id=txn_id(spec.turn_id, spec.agent_id, f"file-{index}-failed"),
        )
        return replace(state, event_id=event_id)

    async def _record(self, spec: TurnSpec, outcome: Outcome, files: list[ReplyFileState]) -> None:
        kept = self._progress[spec.key] = replace(outcome, files=tuple(files))
        await self.store.turns.set_output(spec.turn_id, spec.agent_id, kept.to_json())
