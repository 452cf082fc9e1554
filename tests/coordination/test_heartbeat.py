"""Heartbeat meaning: a beat older than its TTL is offline."""

from salon.coordination.heartbeat import AgentState, AgentStatus, effective_status, parse_state


def test_fresh_beat_keeps_its_status_and_stale_beat_is_offline() -> None:
    state = AgentState(status=AgentStatus.ONLINE, heartbeat_ts=1_000_000, ttl_s=90)
    assert effective_status(state, now_ms=1_000_000 + 89_000) is AgentStatus.ONLINE
    assert effective_status(state, now_ms=1_000_000 + 91_000) is AgentStatus.OFFLINE


def test_malformed_state_reads_as_offline() -> None:
    assert parse_state({"status": "dancing"}) is None
    assert effective_status(None) is AgentStatus.OFFLINE
