"""Reading work references never raises and stays bounded, whatever the text."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.coordination.test_refs import _wire

from salon.coordination.refs import MAX_CANDIDATES, MAX_REFS, WorkRef, parse_refs

_PIECES = st.sampled_from(
    [
        "#",
        "!",
        "12",
        "0",
        "7",
        "123456",
        "a",
        "ж",
        "group",
        "/",
        "-",
        ".",
        "_",
        ":",
        ";",
        "@",
        "&",
        " ",
        "\n",
        "```",
        "~~~",
        "(",
        ")",
        "https://",
        "http://",
        "gitlab.example.com",
        "github.com",
        "/-/",
        "issues/",
        "merge_requests/",
        "pull/",
        "?x=1",
        "#note_1",
        "color: ",
        "#fff",
        "user:pw@",
        "\ud800",
        "\x00",
    ]
)
_TEXTS = st.text(max_size=300) | st.lists(_PIECES, max_size=60).map("".join)


def _check(refs: list[WorkRef], texts: tuple[str, ...], limit: int = MAX_REFS) -> None:
    assert len(refs) <= max(limit, 0)
    keys = set()
    for ref in refs:
        assert isinstance(ref, WorkRef)
        assert WorkRef.model_validate(ref.model_dump()) == ref
        assert WorkRef.model_validate(_wire(ref)) == ref
        key = (ref.kind, ref.project and ref.project.casefold(), ref.number, ref.url)
        assert key not in keys
        keys.add(key)
        if ref.url is None:
            assert any(ref.text in t for t in texts)  # as written


@settings(max_examples=500, deadline=None)
@given(text=_TEXTS)
def test_any_text_never_raises(text: str) -> None:
    _check(parse_refs(text), (text,))


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(_TEXTS, max_size=4), limit=st.integers(-2, 30))
def test_any_texts_and_limit(texts: list[str], limit: int) -> None:
    _check(parse_refs(*texts, limit=limit), tuple(texts), limit)


@pytest.mark.parametrize(
    "text",
    [
        "#1 " * 40_000,
        "#123 " * 30_000,  # colour-sized: each one looks around
        "#123 #abcdef " * 10_000,
        "a/" * 50_000,
        "a/" * 50_000 + "#1",
        "a" * 100_000 + "#1",
        "/".join(["a" * 30] * 3_000) + "!1",
        "https://" * 20_000,
        "https://gitlab.example.com/" + "g/" * 40_000 + "-/issues/1",
        "https://github.com/o/r/issues/1 " * 3_000,
        "```\n" * 40_000,
        "``` x\n#1\n" * 20_000,
        "!" * 100_000,
        "#" * 100_000,
        "\n" * 100_000,
    ],
)
def test_hostile_input_is_quick_and_bounded(text: str) -> None:
    started = time.perf_counter()
    refs = parse_refs(text, text)
    elapsed = time.perf_counter() - started
    assert len(refs) <= MAX_REFS
    assert elapsed < 3.0, f"{elapsed:.2f} s"


def test_raw_matches_are_bounded_per_text() -> None:
    # Past MAX_CANDIDATES raw matches in one text, the rest of it is not looked at.
    text = "#1 " * MAX_CANDIDATES + "#2"
    assert [r.number for r in parse_refs(text)] == [1]
    assert [r.number for r in parse_refs(text, "#2")] == [1, 2]
