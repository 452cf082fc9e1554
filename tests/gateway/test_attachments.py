"""The gateway's side of files: where they are kept, a second handling of the same
event reusing the whole file, and what the sender is told when one is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from salon._exceptions import MatrixConnectionError, NotFoundError
from salon.config.models import AttachmentsConfig
from salon.gateway.attachments import AttachmentFetcher, stored_path, turn_text
from salon.ids import AgentId, EventId, RoomId, UserId
from salon.matrix.events import InboundEvent
from salon.matrix.media import MediaTooLargeError, parse_media
from salon.metrics import ATTACHMENTS

CONTENT = {"msgtype": "m.file", "body": "a.pdf", "url": "mxc://x/Id1", "info": {"size": 3}}


def _event(content: dict[str, object]) -> InboundEvent:
    return InboundEvent(
        EventId("$ev:x"),
        RoomId("!r:x"),
        UserId("@a:x"),
        "m.room.message",
        content,
        0,
        UserId("@b:x"),
    )


def test_the_text_of_a_file_is_its_caption() -> None:
    assert turn_text(_event(CONTENT)) == ""
    assert turn_text(_event({**CONTENT, "filename": "a.pdf", "body": "read it"})) == "read it"
    assert turn_text(_event({"msgtype": "m.text", "body": "hi"})) == "hi"


def test_files_are_kept_per_agent_and_session(tmp_path: Path) -> None:
    one = stored_path(tmp_path, "agent:echo:matrix:!r:x", "$ev/../x", "../../a.pdf")
    other = stored_path(tmp_path, "agent:echo:matrix:!r:x:thread:$t", "$ev/../x", "a.pdf")
    assert one.is_relative_to(tmp_path / "attachments")
    assert one.name.endswith("-a.pdf") and ".." not in one.parts
    assert one.parent != other.parent


async def test_a_second_handling_reuses_the_whole_file(tmp_path: Path) -> None:
    # No API for the agent: a download would fail with KeyError.
    fetcher = AttachmentFetcher(AttachmentsConfig(), lambda _: tmp_path, {})
    event, media = _event(CONTENT), parse_media(CONTENT)
    assert media is not None
    dest = stored_path(tmp_path, "s", event.event_id, "a.pdf")
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"abc")
    before = ATTACHMENTS.labels(outcome="reused")._value.get()
    stored = await fetcher.fetch(media, event, AgentId("echo"), "s")
    assert (stored.path, stored.size, stored.name) == (dest, 3, "a.pdf")
    assert ATTACHMENTS.labels(outcome="reused")._value.get() == before + 1


def test_refusals_say_why_and_outages_are_raised() -> None:
    fetcher = AttachmentFetcher(AttachmentsConfig(), lambda _: Path("."), {})
    big = fetcher.refusal(MediaTooLargeError(5000, 1000), "big.zip", "Echo", "en")
    assert big.reason == "attachment_too_large"
    assert "big.zip is too large (5000 bytes or more; the limit is 1000 bytes)" in big.notice
    gone = fetcher.refusal(NotFoundError("404", http_status=404), "x.bin", "Echo", "ru")
    assert gone.reason == "attachment_failed: not found on the homeserver"
    assert "x.bin" in gone.notice
    with pytest.raises(MatrixConnectionError):
        fetcher.refusal(MatrixConnectionError("down"), "x.bin", "Echo", "en")
