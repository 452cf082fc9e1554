"""The delegation protocol: payload validation, serialisation and the reasons to drop.

The receiver's checks are test_protocol_checks.py, arbitrary payloads
test_protocol_fuzz.py, work references test_protocol_refs.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from salon.coordination.protocol import (
    REQUEST,
    STATUS,
    TERMINAL,
    DelegationRequest,
    DelegationState,
    DelegationStatus,
    new_delegation_id,
    new_request,
    parse_request,
    parse_status,
    request_content,
    status_content,
)

NOW = 1_700_000_000_000


def _invalid_count(kind: str) -> float:
    return REGISTRY.get_sample_value("salon_delegation_invalid_total", {"kind": kind}) or 0.0


def _request(**overrides: Any) -> dict[str, Any]:
    content: dict[str, Any] = {
        "v": 1,
        "id": "dlg_root",
        "from": "coder",
        "to": "researcher",
        "task": "find the paper",
        "root": "dlg_root",
        "chain": ["coder", "researcher"],
        "hop": 1,
        "deadline_ts": NOW + 60_000,
    }
    content.update(overrides)
    return {k: v for k, v in content.items() if v is not _DROP}


_DROP = object()


def test_event_types() -> None:
    assert REQUEST == "com.salon.delegation.request"
    assert STATUS == "com.salon.delegation.status"
    assert {DelegationState.COMPLETED, DelegationState.FAILED, DelegationState.REJECTED} == TERMINAL


def test_request_round_trip_uses_from_on_the_wire() -> None:
    content = _request(context="some background")
    req = parse_request(content)
    assert req is not None
    assert (req.from_, req.to, req.hop, req.chain) == (
        "coder",
        "researcher",
        1,
        ["coder", "researcher"],
    )
    wire = request_content(req)
    assert wire == content
    text = json.dumps(wire)
    assert '"from": "coder"' in text and "from_" not in text
    assert parse_request(json.loads(text)) == req


def test_request_nulls_are_left_out_and_unknown_fields_ignored() -> None:
    req = parse_request(_request(future_field={"x": 1}, context=None))
    assert req is not None
    wire = request_content(req)
    assert "context" not in wire and "parent" not in wire and "future_field" not in wire
    assert wire["v"] == 1


def test_request_by_field_name() -> None:
    req = DelegationRequest(
        id="d1",
        from_="a",
        to="b",
        task="t",
        root="d1",
        chain=["a", "b"],
        hop=1,
        deadline_ts=NOW,
    )
    assert request_content(req)["from"] == "a"


def test_new_request_root_and_child() -> None:
    root = new_request("a", "b", "do it", deadline_ts=NOW)
    assert root.id.startswith("dlg_") and root.root == root.id and root.parent is None
    assert (root.chain, root.hop) == (["a", "b"], 1)
    child = new_request("b", "c", "part of it", deadline_ts=NOW, parent=root)
    assert (child.root, child.parent, child.chain, child.hop) == (
        root.id,
        root.id,
        ["a", "b", "c"],
        2,
    )
    assert parse_request(request_content(child)) == child
    with pytest.raises(ValueError):
        new_request("x", "c", "not yours", deadline_ts=NOW, parent=root)


def test_for_user_is_optional_and_passed_down_the_chain() -> None:
    # A request of an older version (or for nobody in particular) has none.
    old = parse_request(_request())
    assert old is not None and old.for_user is None
    assert "for_user" not in request_content(old)
    req = parse_request(_request(for_user="@alice:example.org"))
    assert req is not None and req.for_user == "@alice:example.org"
    assert request_content(req)["for_user"] == "@alice:example.org"
    root = new_request("a", "b", "do it", deadline_ts=NOW, for_user="@alice:example.org")
    child = new_request("b", "c", "part of it", deadline_ts=NOW, parent=root)
    assert child.for_user == "@alice:example.org"  # still done for Alice
    assert parse_request(request_content(child)) == child


def test_new_delegation_id_is_unique_and_valid() -> None:
    ids = {new_delegation_id() for _ in range(200)}
    assert len(ids) == 200
    for i in ids:
        assert len(i) == 24 and i.startswith("dlg_")
        assert parse_request(_request(id=i, root=i)) is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {"v": 2},
        {"v": "1"},
        {"v": True},
        {"id": _DROP},
        {"id": ""},
        {"id": "x" * 101},
        {"id": "has space"},
        {"id": 7},
        {"from": _DROP},
        {"from": "Coder"},
        {"from": "-coder"},
        {"from": "a" * 33},
        {"from": "@coder:localhost"},
        {"to": _DROP},
        {"to": "Researcher", "chain": ["coder", "Researcher"]},
        {"task": _DROP},
        {"task": ""},
        {"task": "x" * 20_001},
        {"task": 5},
        {"context": "x" * 50_001},
        {"context": 5},
        {"parent": "bad id!"},
        {"root": _DROP},
        {"root": "another"},  # a root (no parent) must have root == id
        {"chain": _DROP},
        {"chain": "coder,researcher"},
        {"chain": ["researcher"]},
        {"chain": ["coder", "other"]},  # must end with to
        {"chain": ["other", "researcher"]},  # ... preceded by from
        {"chain": [*"abcdefghijklmno", "coder", "researcher"]},  # 17 > 16
        {"chain": ["coder", 5]},
        {"hop": _DROP},
        {"hop": 0},
        {"hop": "1"},
        {"hop": 1.0},
        {"hop": True},
        {"deadline_ts": _DROP},
        {"deadline_ts": 0},
        {"deadline_ts": -5},
        {"deadline_ts": "soon"},
        # for_user: a Matrix user id, or absent
        {"for_user": "alice"},
        {"for_user": "@alice"},
        {"for_user": "@ali ce:localhost"},
        {"for_user": "@alice:local host"},
        {"for_user": ""},
        {"for_user": 5},
        {"for_user": ["@alice:localhost"]},
        {"for_user": "@" + "a" * 250 + ":localhost"},  # over 255 characters
        # work references: validated like the rest
        {"refs": "#12"},
        {"refs": {"kind": "issue", "number": 12, "text": "#12"}},
        {"refs": [None]},
        {"refs": ["#12"]},
        {"refs": [{"kind": "issue", "number": 12, "text": "#12"}] * 21},  # 21 > 20
        {"refs": [{"kind": "issue", "number": "12", "text": "#12"}]},
        {"refs": [{"kind": "issue", "number": True, "text": "#12"}]},
        {"refs": [{"kind": "issue", "number": 0, "text": "#0"}]},
        {"refs": [{"kind": "epic", "number": 12, "text": "&12"}]},
        {"refs": [{"kind": "issue", "number": 12}]},  # no text
        {"refs": [{"kind": "issue", "number": 12, "text": "x" * 2_049}]},
        {"refs": [{"kind": "issue", "number": 12, "text": "#12 and more"}]},
        {"refs": [{"kind": "issue", "number": 12, "text": "#12", "project": "p" * 256}]},
        {"refs": [{"kind": "issue", "number": 12, "text": "#12", "project": "../etc"}]},
        {"refs": [{"kind": "issue", "number": 12, "text": "#12", "forge": "gitlab"}]},
        {
            "refs": [
                {
                    "kind": "issue",
                    "number": 12,
                    "text": "#12",
                    "project": "g/p",
                    "forge": "gitlab",
                    "url": "javascript:alert(1)",
                }
            ]
        },
    ],
)
def test_invalid_request_is_dropped_with_one_warning_and_counted(overrides: dict[str, Any]) -> None:
    before = _invalid_count("request")
    with capture_logs() as logs:
        assert parse_request(_request(**overrides)) is None
    assert _invalid_count("request") == before + 1
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["event"] == "delegation.invalid"
    assert warnings[0]["kind"] == "request"


@pytest.mark.parametrize("content", [None, "text", 5, [], [_request()], {}])
def test_non_object_request_is_dropped(content: object) -> None:
    before = _invalid_count("request")
    assert parse_request(content) is None
    assert _invalid_count("request") == before + 1


def test_child_request_may_have_another_root() -> None:
    child = _request(
        id="dlg_child",
        parent="dlg_root",
        root="dlg_root",
        **{"from": "researcher", "to": "writer"},
        chain=["coder", "researcher", "writer"],
        hop=2,
    )
    req = parse_request(child)
    assert req is not None and req.root == "dlg_root" and req.parent == "dlg_root"


def test_status_round_trip() -> None:
    for st_ in [
        DelegationStatus(id="d1", state=DelegationState.ACCEPTED),
        DelegationStatus(id="d1", state=DelegationState.PROGRESS, text="reading"),
        DelegationStatus(id="d1", state=DelegationState.COMPLETED, result="42"),
        DelegationStatus(id="d1", state=DelegationState.COMPLETED, result=""),
        DelegationStatus(id="d1", state=DelegationState.FAILED, error="boom"),
        DelegationStatus(id="d1", state=DelegationState.REJECTED, error="hop limit 3 exceeded"),
    ]:
        wire = json.loads(json.dumps(status_content(st_)))
        assert wire["v"] == 1 and wire["state"] == st_.state.value
        assert all(v is not None for v in wire.values())
        assert parse_status(wire) == st_


@pytest.mark.parametrize(
    "content",
    [
        {"id": "d1", "state": "completed"},  # no result
        {"id": "d1", "state": "failed"},  # no error
        {"id": "d1", "state": "rejected", "result": "x"},  # no error
        {"id": "d1", "state": "done", "result": "x"},
        {"id": "d1", "state": 1},
        {"state": "accepted"},
        {"id": "bad id", "state": "accepted"},
        {"id": "d1", "state": "accepted", "v": 2},
        {"id": "d1", "state": "completed", "result": "x" * 100_001},
        {"id": "d1", "state": "failed", "error": "x" * 2_001},
        {"id": "d1", "state": "progress", "text": "x" * 2_001},
        {"id": "d1", "state": "progress", "text": 5},
        None,
        ["accepted"],
    ],
)
def test_invalid_status_is_dropped_and_counted(content: object) -> None:
    before = _invalid_count("status")
    with capture_logs() as logs:
        assert parse_status(content) is None
    assert _invalid_count("status") == before + 1
    assert [e["kind"] for e in logs if e["log_level"] == "warning"] == ["status"]
