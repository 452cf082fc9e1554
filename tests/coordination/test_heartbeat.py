"""Heartbeat meaning: a beat older than its TTL is offline."""

import asyncio
import contextlib

from tests.fake_matrix import FakeHomeserver

from salon.coordination.heartbeat import (
    AGENT_STATE,
    AgentState,
    AgentStatus,
    Heartbeat,
    effective_status,
    parse_state,
)
from salon.ids import RoomId


def test_fresh_beat_keeps_its_status_and_stale_beat_is_offline() -> None:
    state = AgentState(status=AgentStatus.ONLINE, heartbeat_ts=1_000_000, ttl_s=90)
    assert effective_status(state, now_ms=1_000_000 + 89_000) is AgentStatus.ONLINE
    assert effective_status(state, now_ms=1_000_000 + 91_000) is AgentStatus.OFFLINE


def test_malformed_state_reads_as_offline() -> None:
    assert parse_state({"status": "dancing"}) is None
    assert effective_status(None) is AgentStatus.OFFLINE


async def test_the_first_beat_waits_for_its_turn() -> None:
    """A start paces the first beats (steps.heartbeats): none goes out before its turn."""
    api = FakeHomeserver().api("@a:localhost")
    room = await api.create_room()
    beat = Heartbeat(api, RoomId(room), agent_id="a", gateway="g", interval_s=30, ttl_s=90)
    sent_before_turn: list[int] = []

    async def turn() -> None:
        sent_before_turn.append(len(api.calls_to("send_state")))

    beat.before_first = turn

    class Handle:
        def healthy(self) -> None:
            raise asyncio.CancelledError  # one round is enough

    with contextlib.suppress(asyncio.CancelledError):
        await beat.run(Handle())  # type: ignore[arg-type]
    assert sent_before_turn == [0]
    assert [c["event_type"] for c in api.calls_to("send_state")] == [AGENT_STATE]
    assert beat.before_first is None, "a restarted loop does not wait again"
