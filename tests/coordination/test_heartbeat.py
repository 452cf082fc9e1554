"""Heartbeat meaning: a beat older than its TTL is offline."""

import asyncio
import contextlib

from tests.fake_matrix import FakeHomeserver

from salon.coordination.heartbeat import (
    AGENT_STATE,
    AgentState,
    AgentStatus,
    Heartbeat,
    all_offline,
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


class SlowStates:
    """State sends that take a while (or forever), counted at once in flight."""

    def __init__(self, user_id: str, delay_s: float, gauge: list[int]) -> None:
        self.user_id, self.delay_s, self.gauge = user_id, delay_s, gauge
        self.sent: list[str] = []

    async def send_state(self, room_id: str, event_type: str, content: dict, key: str) -> None:
        self.gauge[0] += 1
        self.gauge[1] = max(self.gauge[1], self.gauge[0])
        try:
            await asyncio.sleep(self.delay_s)
            self.sent.append(content["status"])
        finally:
            self.gauge[0] -= 1


def beats(n: int, delay_s: float, gauge: list[int]) -> list[Heartbeat]:
    return [
        Heartbeat(
            SlowStates(f"@a{i}:x", delay_s, gauge),  # type: ignore[arg-type]
            RoomId(f"!r{i}:x"),
            agent_id=f"a{i}",
            gateway="g",
            interval_s=30,
            ttl_s=90,
        )
        for i in range(n)
    ]


async def test_a_stop_says_offline_a_few_at_a_time() -> None:
    gauge = [0, 0]  # in flight now, at most
    everyone = beats(20, 0.01, gauge)
    assert await all_offline(everyone, parallel=4, within_s=10) == 0
    assert all(b.api.sent == ["offline"] for b in everyone)  # type: ignore[attr-defined]
    assert gauge[1] <= 4, "never more than four state events in flight"


async def test_a_stop_gives_the_offline_beats_a_bound_all_together() -> None:
    gauge = [0, 0]
    stuck = beats(10, 3600, gauge)
    skipped = await asyncio.wait_for(all_offline(stuck, parallel=4, within_s=0.2), 5)
    assert skipped == 10
    assert gauge[0] == 0, "nothing left in flight"


async def test_a_slow_turn_does_not_wait_at_the_door_to_show_busy() -> None:
    api = FakeHomeserver().api("@a:localhost")
    room = await api.create_room()
    beat = Heartbeat(api, RoomId(room), agent_id="a", gateway="g", interval_s=30, ttl_s=90)
    beat.before_first = asyncio.Event().wait  # the door never opens

    class Handle:
        def healthy(self) -> None:
            raise asyncio.CancelledError  # one round is enough

    running = asyncio.create_task(beat.run(Handle()))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    beat.busy()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)
    assert [c["content"]["status"] for c in api.calls_to("send_state")] == ["busy"]
