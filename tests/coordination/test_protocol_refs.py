"""The delegation protocol: the work references a request carries."""

from __future__ import annotations

import json

from tests.coordination.test_protocol import NOW, _request

from salon.coordination.protocol import new_request, parse_request, request_content

REF_TASK = "fix group/project#12, see https://github.com/owner/repo/pull/34 and #12"


def test_new_request_carries_the_refs_of_its_task_and_context() -> None:
    req = new_request(
        "a", "b", REF_TASK, deadline_ts=NOW, context="also !7 and https://example.com/#9"
    )
    assert req.refs is not None
    assert [r.label for r in req.refs] == ["group/project#12", "owner/repo#34", "#12", "!7"]
    wire = json.loads(json.dumps(request_content(req)))
    assert wire["refs"][0] == {
        "kind": "issue",
        "number": 12,
        "project": "group/project",
        "text": "group/project#12",
    }
    assert wire["refs"][1] == {
        "kind": "merge_request",
        "number": 34,
        "project": "owner/repo",
        "url": "https://github.com/owner/repo/pull/34",
        "forge": "github",
        "text": "https://github.com/owner/repo/pull/34",
    }
    assert parse_request(wire) == req


def test_a_child_request_has_the_refs_of_its_own_task() -> None:
    root = new_request("a", "b", REF_TASK, deadline_ts=NOW)
    child = new_request("b", "c", "just !5", deadline_ts=NOW, parent=root)
    assert child.refs is not None and [r.label for r in child.refs] == ["!5"]


def test_no_refs_means_no_refs_field() -> None:
    req = new_request("a", "b", "C# in room #salon-coder:server, colour #fff", deadline_ts=NOW)
    assert req.refs is None
    assert "refs" not in request_content(req)


def test_requests_from_before_refs_stay_valid() -> None:
    old = _request()
    assert "refs" not in old
    req = parse_request(old)
    assert req is not None and req.refs is None
    assert request_content(req) == old


def test_received_refs_are_taken_as_sent_not_reparsed() -> None:
    # The delegator parsed them; the receiver validates, it does not second-guess.
    refs = [{"kind": "issue", "number": 3, "project": "g/p", "text": "g/p#3", "note": "later"}]
    req = parse_request(_request(task="nothing here", refs=refs))
    assert req is not None and req.refs is not None
    assert [r.label for r in req.refs] == ["g/p#3"]
    assert request_content(req)["refs"] == [{k: v for k, v in refs[0].items() if k != "note"}]
    empty = parse_request(_request(refs=[]))
    assert empty is not None and empty.refs == []


def test_twenty_refs_at_most() -> None:
    task = " ".join(f"#{n}" for n in range(1, 40))
    req = new_request("a", "b", task, deadline_ts=NOW)
    assert req.refs is not None and len(req.refs) == 20
    assert parse_request(request_content(req)) == req
