"""The 429 policy: how long to wait and when to give up."""

from salon.matrix.ratelimit import RetryPolicy, parse_retry_after, retry_delay


def test_retry_after_ms_in_body_wins_over_header() -> None:
    assert parse_retry_after({"retry_after_ms": 1932}, "5") == 1.932


def test_retry_after_header_used_when_body_has_none() -> None:
    assert parse_retry_after({"errcode": "M_LIMIT_EXCEEDED"}, "3") == 3.0


def test_garbage_retry_hints_are_ignored() -> None:
    assert parse_retry_after({"retry_after_ms": "soon"}, "Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after({"retry_after_ms": True}, None) is None
    assert parse_retry_after(None, "-4") is None


def test_delay_follows_server_hint_capped_by_policy() -> None:
    policy = RetryPolicy(max_retries=3, max_wait_s=10, default_wait_s=0.5)
    assert retry_delay(policy, 1, 2.0) == 2.0
    assert retry_delay(policy, 1, 120.0) == 10
    assert retry_delay(policy, 2, None) == 1.0  # default grows with attempts


def test_gives_up_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    assert retry_delay(policy, 2, 0.1) == 0.1
    assert retry_delay(policy, 3, 0.1) is None
