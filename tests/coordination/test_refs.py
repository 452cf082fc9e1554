"""Work references in text: what is one (the lookalikes are test_refs_lookalikes.py,
the ref model test_refs_model.py, hostile input test_refs_fuzz.py)."""

from __future__ import annotations

from typing import Any

import pytest

from salon.coordination.refs import MAX_REFS, WorkRef, parse_refs


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
