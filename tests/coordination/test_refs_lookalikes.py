"""Work references in text: what only looks like one."""

from __future__ import annotations

import pytest

from salon.coordination.refs import parse_refs


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
