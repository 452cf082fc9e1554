"""Work references in text: what is one, what only looks like one, and the ref model."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from salon.coordination.refs import (
    MAX_CANDIDATES,
    MAX_REFS,
    WorkRef,
    labels_of,
    parse_refs,
    refs_of,
)


def _one(text: str) -> WorkRef:
    refs = parse_refs(text)
    assert len(refs) == 1, (text, refs)
    return refs[0]


def _wire(ref: WorkRef) -> dict[str, Any]:
    return ref.model_dump(mode="json", exclude_none=True)


# --- what is a reference ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("#12", {"kind": "issue", "number": 12, "text": "#12"}),
        ("!34", {"kind": "merge_request", "number": 34, "text": "!34"}),
        (
            "group/project#12",
            {"kind": "issue", "number": 12, "project": "group/project", "text": "group/project#12"},
        ),
        (
            "group/sub/project!34",
            {
                "kind": "merge_request",
                "number": 34,
                "project": "group/sub/project",
                "text": "group/sub/project!34",
            },
        ),
        (
            "my-group/my.project_2#7",
            {
                "kind": "issue",
                "number": 7,
                "project": "my-group/my.project_2",
                "text": "my-group/my.project_2#7",
            },
        ),
        (
            "https://gitlab.example.com/group/sub/project/-/issues/12",
            {
                "kind": "issue",
                "number": 12,
                "project": "group/sub/project",
                "url": "https://gitlab.example.com/group/sub/project/-/issues/12",
                "forge": "gitlab",
                "text": "https://gitlab.example.com/group/sub/project/-/issues/12",
            },
        ),
        (
            "https://gitlab.example.com/group/sub/project/-/merge_requests/34",
            {
                "kind": "merge_request",
                "number": 34,
                "project": "group/sub/project",
                "url": "https://gitlab.example.com/group/sub/project/-/merge_requests/34",
                "forge": "gitlab",
                "text": "https://gitlab.example.com/group/sub/project/-/merge_requests/34",
            },
        ),
        (
            "https://github.com/owner/repo/issues/12",
            {
                "kind": "issue",
                "number": 12,
                "project": "owner/repo",
                "url": "https://github.com/owner/repo/issues/12",
                "forge": "github",
                "text": "https://github.com/owner/repo/issues/12",
            },
        ),
        (
            "https://github.com/owner/repo/pull/34",
            {
                "kind": "merge_request",
                "number": 34,
                "project": "owner/repo",
                "url": "https://github.com/owner/repo/pull/34",
                "forge": "github",
                "text": "https://github.com/owner/repo/pull/34",
            },
        ),
    ],
)
def test_each_form(text: str, wire: dict[str, Any]) -> None:
    assert _wire(_one(text)) == wire
    # Inside a sentence too.
    assert _wire(_one(f"Please look at {text} today.")) == wire


@pytest.mark.parametrize(
    "text",
    [
        "(#12)",
        "[#12]",
        "#12.",
        "#12,",
        "#12:",
        "#12;",  # not colour-sized
        "#12!",
        "#12?",
        "**#12**",
        "'#12'",
        '"#12"',
        "#12's",
        "Fixes #12",
        "Fixes: #12",
        "#12\n",
        "line one\n#12 is broken",
        "— #12",
        "#12-#13",
        "#1",
        "#999999999",
    ],
)
def test_punctuation_around_an_issue(text: str) -> None:
    ref = parse_refs(text)[0]
    assert ref.kind == "issue" and ref.project is None
    assert text.find(ref.text) >= 0


@pytest.mark.parametrize(
    ("text", "url", "written"),
    [
        # Trailing parts of the page are left out of the url, kept in the text.
        (
            "https://gitlab.example.com/g/p/-/merge_requests/34/diffs#note_5",
            "https://gitlab.example.com/g/p/-/merge_requests/34",
            "https://gitlab.example.com/g/p/-/merge_requests/34/diffs#note_5",
        ),
        (
            "https://github.com/o/r/pull/34/files.",
            "https://github.com/o/r/pull/34",
            "https://github.com/o/r/pull/34/files",
        ),
        ("see [it](https://github.com/o/r/issues/1))", "https://github.com/o/r/issues/1", None),
        ("<https://github.com/o/r/issues/1>", "https://github.com/o/r/issues/1", None),
        ("(https://github.com/o/r/issues/1).", "https://github.com/o/r/issues/1", None),
        (
            "(see https://github.com/o/r/issues/1/(x))",
            "https://github.com/o/r/issues/1",
            "https://github.com/o/r/issues/1/(x)",
        ),
        (
            "HTTPS://GitLab.Example.COM/G/P/-/issues/3",
            "https://gitlab.example.com/G/P/-/issues/3",
            "HTTPS://GitLab.Example.COM/G/P/-/issues/3",
        ),
        ("http://localhost:8080/g/p/-/issues/3", "http://localhost:8080/g/p/-/issues/3", None),
        ("https://www.github.com/o/r/issues/5", "https://www.github.com/o/r/issues/5", None),
        ("https://github.example.com/o/r/pull/5", "https://github.example.com/o/r/pull/5", None),
        # Credentials and query strings never travel: the text is the clean url then.
        (
            "https://user:s3cret@gitlab.example.com/g/p/-/issues/9",
            "https://gitlab.example.com/g/p/-/issues/9",
            "https://gitlab.example.com/g/p/-/issues/9",
        ),
        (
            "https://gitlab.example.com/g/p/-/issues/9?private_token=s3cret",
            "https://gitlab.example.com/g/p/-/issues/9",
            "https://gitlab.example.com/g/p/-/issues/9",
        ),
    ],
)
def test_urls(text: str, url: str, written: str | None) -> None:
    ref = _one(text)
    assert ref.url == url
    assert ref.text == (written if written is not None else url)  # None: as the url
    assert "s3cret" not in ref.model_dump_json()


def test_deep_gitlab_groups() -> None:
    project = "/".join(f"g{i}" for i in range(10))
    ref = _one(f"https://gitlab.example.com/{project}/-/issues/4 and")
    assert ref.project == project and ref.label == f"{project}#4"


def test_order_and_duplicates() -> None:
    text = "#12, then !34, then #12 again, group/p#12, !34 and GROUP/P#12"
    assert [r.label for r in parse_refs(text)] == ["#12", "!34", "group/p#12"]


def test_a_url_completes_the_short_form_named_before() -> None:
    refs = parse_refs("group/project#12 — https://gitlab.example.com/group/project/-/issues/12")
    assert len(refs) == 1
    assert refs[0].text == "group/project#12"
    assert refs[0].url == "https://gitlab.example.com/group/project/-/issues/12"
    assert refs[0].forge == "gitlab"


def test_the_same_path_on_two_hosts_is_two_refs() -> None:
    refs = parse_refs(
        "https://gitlab.a.example/g/p/-/issues/1 https://gitlab.b.example/g/p/-/issues/1"
        " https://gitlab.a.example/g/p/-/issues/1#note_2"
    )
    assert [r.url for r in refs] == [
        "https://gitlab.a.example/g/p/-/issues/1",
        "https://gitlab.b.example/g/p/-/issues/1",
    ]


def test_issue_and_merge_request_of_one_number_differ() -> None:
    assert [r.kind for r in parse_refs("#5 !5")] == ["issue", "merge_request"]


def test_several_texts_share_order_and_dedup() -> None:
    refs = parse_refs("task #1 !2", None, "", "context !2 #3")
    assert [r.label for r in refs] == ["#1", "!2", "#3"]


def test_capped() -> None:
    text = " ".join(f"#{n}" for n in range(1, 100))
    refs = parse_refs(text)
    assert len(refs) == MAX_REFS == 20
    assert [r.number for r in refs] == list(range(1, 21))
    assert [r.number for r in parse_refs(text, limit=3)] == [1, 2, 3]
    assert parse_refs(text, limit=0) == []


def test_labels() -> None:
    refs = parse_refs(
        "#1 !2 g/p#3 g/p!4 https://github.com/o/r/pull/5 https://gitlab.x.org/g/p/-/merge_requests/6"
    )
    assert [r.label for r in refs] == ["#1", "!2", "g/p#3", "g/p!4", "o/r#5", "g/p!6"]


# --- what only looks like one ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # Matrix
        "#salon-coder:server",
        "#salon-coder:localhost",
        "#12:matrix.org",
        "!roomid:server",
        "!123:matrix.org",
        "!AbCdEf12:localhost",
        "@salon_12:localhost",
        # languages, words, numbers inside words
        "C#",
        "F# and C# 12",
        "C#12",
        "abc#12",
        "issue#12",
        "x!34",
        "wow!!34",
        "Hello!12",
        "1#2",
        "v1.2#3",
        "жук#12",
        "#12ж",
        "#1a",
        "#12abc",
        "#12_3",
        "#12-fix-login",
        "#12.5",
        "#12,5",
        "#12/34",
        "#12@host",
        "!34+1",
        # Markdown headings and other uses of #
        "# 12 things",
        "## 12",
        "#\n12",
        "#",
        "!",
        "#-12",
        "# #",
        "$#1",
        "${#1}",
        "%#1",
        "&#12;",
        "&#x27;",
        "=#12",
        "~#12",
        "\\#12",
        # hex colours
        "#fff",
        "#FFF",
        "#abcdef",
        "#000",
        "#000000",
        "#007",
        "#0",
        "#00",
        "color: #123456",
        "colour:#123",
        "background-color: #112233;",
        'fill="#12345678"',
        "stroke = '#1234'",
        "border: 1px solid #123456",
        "palette: #abcdef, #123456, #a1b2c3",
        "#123456 #fedcba",
        "x { c: #123; }",
        # leading zero, too long
        "#012",
        "!0",
        "#1234567890",
        # paths, anchors, other URLs
        "a/b/#3",
        "./group/project#12",
        "/group/project#12",
        "page.html#12",
        "foo-#12",
        "user@group/project#12",
        "https://example.com/page#12",
        "https://example.com/group/project#12",
        "https://example.com/x!34",
        "http://a.example/#12",
        "https://en.wikipedia.org/wiki/Heading_(text)#12",
        "https://example.com/f(x)!34",
        "https://example.com/owner/repo/pull/34",  # not GitHub, not GitLab's /-/ form
        "https://github.com/owner/repo/discussions/12",
        "https://github.com/owner/repo/issues/abc",
        "https://github.com/owner/repo/issues/0",
        "https://github.com/owner/repo/issues/12abc",
        "https://github.com/owner/issues/12",
        "https://gitlab.example.com/group/project/-/pipelines/12",
        "https://gitlab.example.com/group/-/issues/abc",
        "https://gitlab.example.com/project/-/issues/12",  # one segment: not a project
        "https://gitlab.example.com/group/project/-/issues/1234567890",
        "https://gitlab.example.com/../x/-/issues/1",
        "ftp://github.com/owner/repo/issues/12",
        "https://[::1]/g/p/-/issues/1",
        "https://:80/g/p/-/issues/1",
        "https://exa mple.com/g/p/-/issues/1",
        # code blocks
        "```\n#12 and !34 and g/p#5\n```",
        "```python\nx = 1  # 12\nprint(#12)\n```",
        "~~~\nhttps://github.com/o/r/issues/1\n~~~",
        "text\n   ```\n#12\n   ```",
        "```\nnever closed #12\n!34",
        "````\n```\n#12\n````",
    ],
)
def test_not_a_reference(text: str) -> None:
    assert parse_refs(text) == [], text


def test_refs_around_code_blocks_still_count() -> None:
    text = "#1\n```\n#2\n```\n#3\n~~~\n#4\n```\n#5\n~~~\n#6 ``` inline ``` #7"
    assert [r.number for r in parse_refs(text)] == [1, 3, 6, 7]


def test_a_colour_beside_an_issue() -> None:
    # The colour rule only takes colour-sized numbers in a colour's company.
    assert [r.number for r in parse_refs("#12 is red (#ff0000) on line one\n#345 on two")] == [
        12,
        345,
    ]


def test_short_forms_inside_urls_are_not_read_twice() -> None:
    refs = parse_refs("https://gitlab.example.com/g/p/-/issues/12#note_34!56")
    assert [r.label for r in refs] == ["g/p#12"]


# --- the model -------------------------------------------------------------------------


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


# --- it never raises and stays bounded -------------------------------------------------

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
