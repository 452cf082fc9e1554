"""Streaming policy with a recording stand-in for the Matrix API (pure logic)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from salon.gateway.stream import ReplyStream, StreamLimits, split_message
from salon.ids import UserId
from salon.matrix.events import parse_event


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send_event(self, room: str, etype: str, content: dict[str, Any], *, txn_id: str):
        self.sent.append((txn_id, content))
        return f"$e{len(self.sent)}"

    async def set_typing(self, *args: Any) -> None:
        return None


def _event() -> Any:
    raw = {
        "event_id": "$q",
        "sender": "@a:x",
        "type": "m.room.message",
        "origin_server_ts": 1,
        "content": {"body": "go"},
    }
    return parse_event(raw, "!r", UserId("@b:x"))


async def _chunks(n: int, delay: float) -> AsyncIterator[str]:
    for i in range(n):
        yield f"c{i} "
        await asyncio.sleep(delay)


async def test_whole_reply_is_one_message_without_edits() -> None:
    api = Recorder()
    stream = ReplyStream(api, _event(), "echo", StreamLimits())  # type: ignore[arg-type]

    async def whole() -> AsyncIterator[str]:
        yield "all at once"

    text = await stream.run(whole())
    await stream.finish(text)
    assert len(api.sent) == 1
    assert api.sent[0][1]["body"] == "all at once"
    assert api.sent[0][1]["com.salon.turn"]["final"] is True


async def test_edit_count_is_bounded_and_final_text_is_complete() -> None:
    api = Recorder()
    limits = StreamLimits(edit_interval_s=0.05, max_edits=3)
    stream = ReplyStream(api, _event(), "s", limits)  # type: ignore[arg-type]
    text = await stream.run(_chunks(40, 0.01))
    await stream.finish(text)
    edits = [c for _, c in api.sent if c.get("m.relates_to", {}).get("rel_type") == "m.replace"]
    assert 1 <= len(edits) <= 3
    assert edits[-1]["m.new_content"]["body"] == "".join(f"c{i} " for i in range(40))
    assert edits[-1]["m.new_content"]["com.salon.turn"]["final"] is True
    assert len({txn for txn, _ in api.sent}) == len(api.sent)  # every send its own txn id


async def test_long_reply_is_split_into_messages() -> None:
    api = Recorder()
    stream = ReplyStream(api, _event(), "s", StreamLimits(max_message_chars=500))  # type: ignore[arg-type]
    text = " ".join(["word"] * 300)  # ~1500 chars
    await stream.finish(text)
    bodies = [c["body"] for _, c in api.sent]
    assert len(bodies) == 3 and all(len(b) <= 500 for b in bodies)
    assert " ".join(bodies).split() == text.split()


def test_split_message_prefers_boundaries() -> None:
    assert split_message("aaa bbb ccc", 8) == ["aaa bbb", "ccc"]
    assert split_message("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
