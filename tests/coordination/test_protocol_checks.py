"""The delegation protocol: the reasons a receiver rejects a valid request."""

from __future__ import annotations

from typing import Any

from tests.coordination.test_protocol import NOW, _request

from salon.coordination.protocol import DelegationRequest, check_request, parse_request


def _req(**overrides: Any) -> DelegationRequest:
    req = parse_request(_request(**overrides))
    assert req is not None
    return req


def test_check_request_accepts_a_good_request() -> None:
    assert check_request(_req(), receiver="researcher", hop_limit=3, now_ms=NOW) is None


def test_check_request_wrong_receiver() -> None:
    reason = check_request(_req(), receiver="writer", hop_limit=3, now_ms=NOW)
    assert reason is not None and "researcher" in reason and "writer" in reason


def test_check_request_hop_limit() -> None:
    chain = ["a", "b", "c", "coder", "researcher"]
    req = _req(id="d4", parent="d3", root="d1", chain=chain, hop=4)
    assert check_request(req, receiver="researcher", hop_limit=3, now_ms=NOW) == (
        "hop limit 3 exceeded"
    )
    assert check_request(req, receiver="researcher", hop_limit=4, now_ms=NOW) is None


def test_check_request_cycle() -> None:
    req = _req(
        id="d2",
        parent="d1",
        root="d1",
        **{"from": "b", "to": "a"},
        chain=["a", "b", "a"],
        hop=2,
    )
    assert check_request(req, receiver="a", hop_limit=3, now_ms=NOW) == (
        "delegation cycle: a → b → a"
    )
    self_loop = _req(**{"from": "a", "to": "a"}, chain=["a", "a"])
    assert check_request(self_loop, receiver="a", hop_limit=3, now_ms=NOW) == (
        "delegation cycle: a → a"
    )


def test_check_request_expired() -> None:
    req = _req(deadline_ts=NOW)
    assert check_request(req, receiver="researcher", hop_limit=3, now_ms=NOW) == (
        "deadline already passed"
    )
    assert check_request(req, receiver="researcher", hop_limit=3, now_ms=NOW - 1) is None
