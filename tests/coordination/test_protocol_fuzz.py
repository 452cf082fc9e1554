"""The delegation protocol: no content, however mangled, makes parsing raise."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from tests.coordination.test_protocol import NOW, _request

from salon.coordination.protocol import (
    DelegationRequest,
    DelegationStatus,
    check_request,
    parse_request,
    parse_status,
    request_content,
    status_content,
)

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["accepted", "completed", "coder", "researcher", "dlg_root", ""]),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
_request_keys = st.sampled_from(
    [
        "v",
        "id",
        "from",
        "to",
        "task",
        "context",
        "parent",
        "root",
        "chain",
        "hop",
        "deadline_ts",
        "refs",
    ]
)
_status_keys = st.sampled_from(["v", "id", "state", "result", "error", "text"])


@settings(max_examples=300, deadline=None)
@given(content=_json)
def test_arbitrary_content_never_raises(content: object) -> None:
    with capture_logs():
        req = parse_request(content)
        st_ = parse_status(content)
    assert req is None or isinstance(req, DelegationRequest)
    assert st_ is None or isinstance(st_, DelegationStatus)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(_request_keys, _json, max_size=4))
def test_mutated_request_never_raises(changes: dict[str, Any]) -> None:
    with capture_logs():
        req = parse_request(_request(**changes))
    if req is not None:
        assert parse_request(request_content(req)) == req
        check_request(req, receiver="researcher", hop_limit=3, now_ms=NOW)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(_status_keys, _json, max_size=4))
def test_mutated_status_never_raises(changes: dict[str, Any]) -> None:
    with capture_logs():
        st_ = parse_status({"id": "d1", "state": "accepted", **changes})
    if st_ is not None:
        assert parse_status(status_content(st_)) == st_
