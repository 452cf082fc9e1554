"""Streaming policy with a recording stand-in for the Matrix API (pure logic)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from salon.ids import EventId, RoomId
from salon.turns.replies import ReplyTo
from salon.turns.stream import (
    ReplyStream,
    ReplyTarget,
    ResumePoint,
    StreamLimits,
    split_message,
)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send_event(self, room: str, etype: str, content: dict[str, Any], *, txn_id: str):
        self.sent.append((txn_id, content))
        return f"$e{len(self.sent)}"

    async def set_typing(self, *args: Any) -> None:
        return None


def _stream(api: Recorder, agent: str, limits: StreamLimits, **kwargs: Any) -> ReplyStream:
    target = ReplyTarget(RoomId("!r"), ReplyTo("$q"), agent, "$q")
    return ReplyStream(api, target, limits, **kwargs)  # type: ignore[arg-type]


async def _chunks(n: int, delay: float) -> AsyncIterator[str]:
    for i in range(n):
        yield f"c{i} "
        await asyncio.sleep(delay)


async def test_whole_reply_is_one_message_without_edits() -> None:
    api = Recorder()
    stream = _stream(api, "echo", StreamLimits())

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
    stream = _stream(api, "s", limits)
    text = await stream.run(_chunks(40, 0.01))
    await stream.finish(text)
    edits = [c for _, c in api.sent if c.get("m.relates_to", {}).get("rel_type") == "m.replace"]
    assert 1 <= len(edits) <= 3
    assert edits[-1]["m.new_content"]["body"] == "".join(f"c{i} " for i in range(40))
    assert edits[-1]["m.new_content"]["com.salon.turn"]["final"] is True
    assert len({txn for txn, _ in api.sent}) == len(api.sent)  # every send its own txn id


async def test_long_reply_is_split_into_messages() -> None:
    api = Recorder()
    stream = _stream(api, "s", StreamLimits(max_message_chars=500))
    text = " ".join(["word"] * 300)  # ~1500 chars
    await stream.finish(text)
    bodies = [c["body"] for _, c in api.sent]
    assert len(bodies) == 3 and all(len(b) <= 500 for b in bodies)
    assert " ".join(bodies).split() == text.split()


def test_split_message_prefers_boundaries() -> None:
    assert split_message("aaa bbb ccc", 8) == ["aaa bbb", "ccc"]
    assert split_message("x" * 10, 4) == ["xxxx", "xxxx", "xx"]


async def test_a_resumed_reply_ends_on_the_final_edit() -> None:
    # A re-run after a crash cannot know what was shown last: it always sends the final
    # edit (same txn id as any earlier final), so that is the newest version shown.
    api = Recorder()
    stream = _stream(api, "s", StreamLimits(), resume=ResumePoint(EventId("$first")))
    await stream.finish("complete text")
    ((_, content),) = api.sent
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$first"}
    assert content["m.new_content"]["body"] == "complete text"
    assert content["m.new_content"]["com.salon.turn"]["final"] is True


async def test_a_reply_is_cut_at_max_reply_chars() -> None:
    api = Recorder()
    stream = _stream(api, "s", StreamLimits(max_reply_chars=100))
    text = await stream.run(_chunks(200, 0))
    assert stream.cut and len(text) == 100


async def test_two_turns_with_the_same_text_send_different_first_messages() -> None:
    # The homeserver derives an event id from the event (content, sender, prev events,
    # timestamp), not from the transaction id: two cron runs' identical replies sent in
    # the same instant (the run resumed after a crash and the catch-up run, at start)
    # would otherwise come back as one event id, shared by both turns' ledger rows.
    api = Recorder()

    async def whole() -> AsyncIterator[str]:
        yield "tick alpha"

    for turn in ("cron:alpha:tick:100", "cron:alpha:tick:104"):
        target = ReplyTarget(RoomId("!r"), ReplyTo(), "alpha", turn)
        stream = ReplyStream(api, target, StreamLimits())  # type: ignore[arg-type]
        await stream.finish(await stream.run(whole()))
    (_, first), (_, second) = api.sent
    assert first != second
