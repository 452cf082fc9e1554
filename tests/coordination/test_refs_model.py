"""The work reference model: validation, round trips, tolerant reads of stored refs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from tests.coordination.test_refs import _one, _wire

from salon.coordination.refs import WorkRef, labels_of, refs_of


def _ref(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "issue", "number": 12, "text": "#12"}
    body.update(over)
    return body


@pytest.mark.parametrize(
    "over",
    [
        {"kind": "epic"},
        {"kind": None},
        {"number": "12"},
        {"number": 12.0},
        {"number": True},
        {"number": 0},
        {"number": -1},
        {"number": 1_000_000_000},
        {"project": "project"},  # one segment
        {"project": "g/p/"},
        {"project": "/g/p"},
        {"project": "g//p"},
        {"project": "g/../p"},
        {"project": "g/."},
        {"project": "g p/x"},
        {"project": "g/p#1"},
        {"project": "a/" + "b" * 260},
        {"project": "/".join("s" * 21)},  # 21 segments
        {"project": 5},
        {"url": "https://x.example/g/p/-/issues/12"},  # a url without its forge
        {"forge": "gitlab"},  # a forge without its url
        {"url": "https://x.example/g/p/-/issues/12", "forge": "gitlab"},  # no project
        {"url": "javascript:alert(1)", "forge": "gitlab", "project": "g/p"},
        {"url": "https://x.example/ a", "forge": "gitlab", "project": "g/p"},
        {"url": "https://x.example/" + "a" * 2_100, "forge": "gitlab", "project": "g/p"},
        {"url": "https://x.example/g/p/-/issues/12", "forge": "gitea", "project": "g/p"},
        {"text": ""},
        {"text": "# 12"},
        {"text": "#12\n"},
        {"text": "#" + "1" * 2_048},
        {"text": "#١٢"},
        {"text": 12},
    ],
)
def test_invalid_ref(over: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        WorkRef.model_validate(_ref(**over))


def test_valid_ref_ignores_unknown_fields_and_round_trips() -> None:
    ref = WorkRef.model_validate(
        _ref(
            project="g/p",
            url="https://gitlab.example.com/g/p/-/issues/12",
            forge="gitlab",
            title="later versions may say more",
        )
    )
    assert WorkRef.model_validate(_wire(ref)) == ref
    assert "title" not in _wire(ref)


def test_stored_refs_are_read_tolerantly() -> None:
    good = _wire(_one("g/p!3"))
    raw: list[Any] = [good, {"kind": "issue"}, "#4", None, 5, _ref(number=0), _ref()]
    assert labels_of(raw) == ["g/p!3", "#12"]
    assert [r.label for r in refs_of(raw)] == ["g/p!3", "#12"]
    assert labels_of(raw, limit=1) == ["g/p!3"]
    garbage: object
    for garbage in (None, "x", 5, {"kind": "issue"}, [[]]):
        assert labels_of(garbage) == []
        assert refs_of(garbage) == []
