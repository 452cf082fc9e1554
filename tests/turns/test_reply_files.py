"""Files agents answer with, through the one turn pipeline (a fake homeserver, a real
SQLite store): kept on disk and in the ledger, uploaded once, sent once after the text,
by mime type; over the cap a line in the reply; a shutdown mid-send loses nothing and
sends nothing twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.helpers import CODER, ScriptedBackend, TurnRig, eventually, open_store

from salon import responses
from salon._exceptions import ForbiddenError
from salon.agents.backend import TurnRequest
from salon.agents.reply_files import ReplyFile, attach
from salon.metrics import REPLY_FILES
from salon.store import Store
from salon.store.records import TurnState
from salon.turns.replies import txn_id
from salon.turns.spec import Outcome

REPORT = ReplyFile("report.txt", "text/plain", b"the report\n" * 10)
DOT = ReplyFile("dot.png", "image/png", b"\x89PNG not really")


@dataclass
class FileBackend(ScriptedBackend):
    """Yields its chunks, then attaches ``files``."""

    files: tuple[ReplyFile, ...] = field(default=())

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        async for chunk in super().stream(request):
            yield chunk
        for file in self.files:
            attach(file)


class Uploads:
    """Stands in for the media upload: records each, answers a new mxc URI."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, str, str]] = []

    async def __call__(
        self, api: Any, room_id: str, data: bytes, mime: str, name: str
    ) -> dict[str, Any]:
        self.calls.append((room_id, data, mime, name))
        return {"url": f"mxc://test/m{len(self.calls)}"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> Uploads:
    fake = Uploads()
    monkeypatch.setattr("salon.turns.files.upload_for_room", fake)
    return fake


def sent_files(rig: TurnRig) -> list[dict[str, Any]]:
    return [e["content"] for e in rig.replies() if "info" in e["content"]]


async def test_files_follow_the_text_once_each_by_mime_type(
    store: Store, tmp_path: Path, uploads: Uploads
) -> None:
    backend = FileBackend(chunks=("here you are",), files=(REPORT, DOT))
    rig = await TurnRig.start(store, tmp_path, backend)
    spec = await rig.message("the report please")
    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    replies = rig.replies()
    assert [r["content"]["body"] for r in replies] == ["here you are", "report.txt", "dot.png"]
    report, dot = sent_files(rig)
    assert report["msgtype"] == "m.file" and dot["msgtype"] == "m.image"
    assert report["info"] == {"mimetype": "text/plain", "size": REPORT.size}
    assert report["url"] == "mxc://test/m1" and dot["url"] == "mxc://test/m2"
    assert report["m.relates_to"] == {"m.in_reply_to": {"event_id": spec.turn_id}}
    assert [(c[1], c[2], c[3]) for c in uploads.calls] == [
        (REPORT.data, "text/plain", "report.txt"),
        (DOT.data, "image/png", "dot.png"),
    ]
    assert record.reply_event_id == replies[0]["event_id"]  # the text answers the turn
    # Kept in the agent's home, and the ledger knows each file's event.
    assert record.output is not None
    files = Outcome.from_json(record.output).files
    assert [f.event_id for f in files] == [r["event_id"] for r in replies[1:]]
    assert files[0].attachment.path.read_bytes() == REPORT.data
    assert files[0].attachment.path.is_relative_to(tmp_path / "coder" / "attachments")
    # The session keeps the reply with a line per file, as the model will see it.
    stored = await store.sessions.messages(spec.session_key, CODER)
    assert stored[-1].content == (
        f"here you are\n[attachment: report.txt text/plain {REPORT.size} bytes]\n"
        f"[attachment: dot.png image/png {DOT.size} bytes]"
    )


async def test_a_file_alone_is_the_answer(store: Store, tmp_path: Path, uploads: Uploads) -> None:
    rig = await TurnRig.start(store, tmp_path, FileBackend(chunks=(), files=(REPORT,)))
    spec = await rig.message("just the file")
    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    (reply,) = rig.replies()
    assert reply["content"]["body"] == "report.txt"  # no "(no answer)" text before it
    assert record.reply_event_id == reply["event_id"]


async def test_a_file_over_the_cap_is_not_sent_and_the_reply_says_so(
    store: Store, tmp_path: Path, uploads: Uploads
) -> None:
    big = ReplyFile("big.bin", "application/octet-stream", b"x" * 201)
    rig = await TurnRig.start(store, tmp_path, FileBackend(chunks=("done",), files=(big, REPORT)))
    rig.runner.files.max_bytes = 200
    before = REPLY_FILES.labels(agent=CODER, outcome="too_large")._value.get()
    spec = await rig.message("both")
    await rig.runner.submit(spec)
    await rig.closed(spec)

    note = responses.text(
        "reply_file_too_large", "en", label="Coder", name="big.bin", size=201, limit=200
    )
    assert rig.bodies()[0] == f"done\n\n{note}"
    assert [c[3] for c in uploads.calls] == ["report.txt"]
    assert [f["body"] for f in sent_files(rig)] == ["report.txt"]
    assert REPLY_FILES.labels(agent=CODER, outcome="too_large")._value.get() == before + 1


async def test_a_refused_upload_gets_a_notice_and_the_turn_still_closes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any) -> dict[str, Any]:
        raise ForbiddenError("media upload answered 403 M_FORBIDDEN", http_status=403)

    monkeypatch.setattr("salon.turns.files.upload_for_room", refuse)
    rig = await TurnRig.start(store, tmp_path, FileBackend(chunks=("here",), files=(REPORT,)))
    spec = await rig.message("file please")
    await rig.runner.submit(spec)
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    notice = rig.replies()[-1]["content"]
    assert notice["msgtype"] == "m.notice"
    assert "report.txt" in notice["body"] and "403" in notice["body"]


async def test_shutdown_while_a_file_is_sent_neither_uploads_nor_sends_it_twice(
    store: Store, tmp_path: Path, uploads: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FileBackend(chunks=("here you are",), files=(REPORT, DOT))
    rig = await TurnRig.start(store, tmp_path, backend)
    spec = await rig.message("files please")

    async def then_down(*args: Any) -> dict[str, Any]:
        uploaded = await Uploads.__call__(uploads, *args)
        if len(uploads.calls) == 2:
            rig.hs.down = True  # the second file is uploaded; its message waits it out
        return uploaded

    monkeypatch.setattr("salon.turns.files.upload_for_room", then_down)
    await rig.runner.submit(spec)
    await eventually(lambda: len(uploads.calls) == 2, what="both uploads")
    sends = len(rig.agent_api.calls_to("send_event"))
    await eventually(
        lambda: len(rig.agent_api.calls_to("send_event")) > sends + 1,
        what="the second file's message to be retried",
    )
    await rig.runner.stop()  # a shutdown while the outage is waited out
    monkeypatch.setattr("salon.turns.files.upload_for_room", uploads)
    assert (await rig.turn(spec)).state is TurnState.ADMITTED

    rig.hs.down = False
    calls_before = len(rig.agent_api.calls)
    rig.runner = rig.new_runner()
    assert await rig.runner.resume_unfinished() == 1
    record = await rig.closed(spec)

    assert record.state is TurnState.REPLIED
    assert backend.calls == 1
    assert len(uploads.calls) == 2, "the re-run sends the recorded uploads"
    assert [f["body"] for f in sent_files(rig)] == ["report.txt", "dot.png"]
    assert [f["url"] for f in sent_files(rig)] == ["mxc://test/m1", "mxc://test/m2"]
    rerun = [a["txn_id"] for m, a in rig.agent_api.calls[calls_before:] if m == "send_event"]
    assert txn_id(spec.turn_id, CODER, "file-0") not in rerun, "a sent file is not sent again"
    assert txn_id(spec.turn_id, CODER, "file-1") in rerun
