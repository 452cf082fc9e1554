"""Work references in text: issues and merge requests, kept as metadata.

:func:`parse_refs` finds, in order of appearance:

- ``#12`` (an issue) and ``!34`` (a merge request) of whatever project is meant;
- ``group/project#12``, ``group/sub/project!34`` (a project path of two or more
  segments, GitLab's and GitHub's cross-project form);
- GitLab URLs on any host, ``https://host/group/sub/project/-/issues/12`` and
  ``…/-/merge_requests/34`` (with or without a trailing ``/diffs``, query or anchor);
- GitHub URLs, ``https://github.com/owner/repo/issues/12`` and ``…/pull/34``.

Each becomes a :class:`WorkRef`. Nothing is looked up: no forge is called, a
reference is what the text says. The same item named twice (twice the same
way, or as ``group/project#12`` and as its URL) is listed once, where it first
appears; at most :data:`MAX_REFS` are kept.

Not references (the text around decides): room aliases and ids
(``#salon-coder:server``, ``#12:server``, ``!abc:server``), ``C#``, ``#1a``,
Markdown headings (``# 12``), hex colours (``#fff``, ``#000``, ``color:
#123456``), HTML entities (``&#12;``), numbers inside words or paths
(``abc#12``, ``v1!2``, ``a/b/#3``, ``page.html#12``), numbers with a leading
zero or over nine digits, anything inside other URLs or fenced code blocks.
Credentials and query strings of URLs are never carried over into a ref.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_REFS = 20
MAX_NUMBER = 999_999_999
MAX_PROJECT = 255
MAX_URL = 2_048
# Texts are scanned up to here (a delegation's task and context are smaller).
MAX_SCAN = 100_000
# Raw matches looked at per text (duplicates included): bounds the work on hostile input.
MAX_CANDIDATES = 1_000

RefKind = Literal["issue", "merge_request"]
Forge = Literal["gitlab", "github"]

_TAIL = r"[A-Za-z0-9_.-]*"
_SEG = rf"[A-Za-z0-9_.]{_TAIL}"
PROJECT_PATTERN = rf"^{_SEG}(?:/{_SEG}){{1,19}}$"
URL_PATTERN = r"^https?://[!-~]+$"
TEXT_PATTERN = r"^[!-~]+$"


class WorkRef(BaseModel):
    """One reference to an issue or a merge request (a GitHub pull request is one).

    ``project`` is the path (``group/sub/project``, ``owner/repo``) or None when
    the text does not say (``#12``); ``url`` and ``forge`` come only from a URL;
    ``text`` is how the text wrote it (a URL without credentials or query).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    kind: RefKind
    number: int = Field(ge=1, le=MAX_NUMBER)
    project: str | None = Field(default=None, max_length=MAX_PROJECT, pattern=PROJECT_PATTERN)
    url: str | None = Field(default=None, max_length=MAX_URL, pattern=URL_PATTERN)
    forge: Forge | None = None
    text: str = Field(max_length=MAX_URL, pattern=TEXT_PATTERN)

    @field_validator("project")
    @classmethod
    def _no_dot_segments(cls, value: str | None) -> str | None:
        if value is not None and any(set(seg) == {"."} for seg in value.split("/")):
            raise ValueError("a project path has no '.' or '..' segment")
        return value

    @model_validator(mode="after")
    def _url_says_where(self) -> Self:
        if (self.url is None) != (self.forge is None):
            raise ValueError("url and forge go together")
        if self.url is not None and self.project is None:
            raise ValueError("a ref with a url names its project")
        return self

    @property
    def label(self) -> str:
        """The short form: ``group/project#12``, ``!34``, ``owner/repo#34`` (a GitHub PR)."""
        mr = self.kind == "merge_request" and self.forge != "github"
        return f"{self.project or ''}{'!' if mr else '#'}{self.number}"


# --- the parser --------------------------------------------------------------------------

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_URL = re.compile(r"(?i:https?)://[^\s<>\"'`\[\]{}|\\^\x00-\x1f\x7f]+")
_URL_TRAILING = ".,;:!?*_~"
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::[0-9]{1,5})?")
_GITLAB_PATH = re.compile(
    rf"/(?P<project>{_SEG}(?:/{_SEG}){{1,19}})/-/(?P<kind>issues|merge_requests)"
    r"/(?P<number>[1-9][0-9]{0,8})(?:/[^?#]*)?"
)
_GITHUB_PATH = re.compile(
    r"/(?P<project>[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9_.-]{1,100})"
    r"/(?P<kind>issues|pull)/(?P<number>[1-9][0-9]{0,8})(?:/[^?#]*)?"
)
# A short ref starts after no word, path, entity or other sigil character, and ends
# before none (``#12:server`` is a room alias, ``#12.5`` a number, ``#12-fix`` a slug).
_SHORT = re.compile(
    r"(?<![\w/.#!&$@%~+={\\-])"
    rf"(?P<project>[A-Za-z0-9_]{_TAIL}(?:/{_SEG}){{1,19}})?"
    r"(?P<sigil>[#!])(?P<number>[1-9][0-9]{0,8})"
    r"(?![\w/@]|[.,:;+\-]\w)"
)
# What makes an all-digit ``#123456`` a colour rather than an issue.
_COLOUR_BEFORE = re.compile(
    r"\b(?:colou?r|background|bg|fill|stroke|border|outline|shadow|hex|rgba?)[\w-]*"
    r"\s*[:=][^;{}:=]*$",
    re.IGNORECASE,
)
_HEX_WITH_LETTER = re.compile(
    r"(?<![\w&])#(?=[0-9a-f]*[a-f])(?:[0-9a-f]{8}|[0-9a-f]{6}|[0-9a-f]{3,4})(?!\w)",
    re.IGNORECASE,
)
_COLOUR_WINDOW = 200


def parse_refs(*texts: str | None, limit: int = MAX_REFS) -> list[WorkRef]:
    """The work references in ``texts`` (in order, each item once, at most ``limit``).

    Never raises on any text; each text is read up to :data:`MAX_SCAN` characters.
    """
    found: list[WorkRef] = []
    for text in texts:
        for ref in _candidates(text[:MAX_SCAN] if text else ""):
            _add(found, ref, limit)
    return found


def labels_of(raw: object, limit: int = MAX_REFS) -> list[str]:
    """The short forms of stored refs (a JSON-ready list of dicts); what is not a valid
    ref is left out, and anything else than a list gives none."""
    if not isinstance(raw, list | tuple):
        return []
    labels = []
    for item in raw[: max(limit, 0)]:
        try:
            labels.append(WorkRef.model_validate(item).label)
        except (ValidationError, TypeError, ValueError):
            continue
    return labels


def refs_of(raw: object, limit: int = MAX_REFS) -> list[WorkRef]:
    """Stored refs (a JSON-ready list of dicts) as :class:`WorkRef`; invalid ones left out."""
    if not isinstance(raw, list | tuple):
        return []
    refs: list[WorkRef] = []
    for item in raw:
        if len(refs) >= limit:
            break
        try:
            refs.append(WorkRef.model_validate(item))
        except (ValidationError, TypeError, ValueError):
            continue
    return refs


def _key(ref: WorkRef) -> tuple[str, str | None, int]:
    return ref.kind, None if ref.project is None else ref.project.casefold(), ref.number


def _host(ref: WorkRef) -> str | None:
    return None if ref.url is None else urlsplit(ref.url).netloc.casefold()


def _add(found: list[WorkRef], ref: WorkRef, limit: int) -> None:
    """Add ``ref`` unless it names an item already there; a URL completes a short form."""
    for i, known in enumerate(found):
        if _key(known) != _key(ref):
            continue
        if known.url is None and ref.url is not None:
            found[i] = known.model_copy(update={"url": ref.url, "forge": ref.forge})
            return
        if known.url is None or ref.url is None or _host(known) == _host(ref):
            return
    if len(found) < limit:
        found.append(ref)


def _candidates(text: str) -> Iterator[WorkRef]:
    """Every ref in one text, in order (duplicates included)."""
    masked = _mask_fences(text)
    spans: list[tuple[int, int]] = []
    hits: list[tuple[int, WorkRef]] = []
    for n, match in enumerate(_URL.finditer(masked)):
        if n >= MAX_CANDIDATES:
            break
        raw = _trim_url(match.group())
        spans.append((match.start(), match.start() + len(raw)))
        ref = _url_ref(raw)
        if ref is not None:
            hits.append((match.start(), ref))
    masked = _blank_spans(masked, spans)
    for n, match in enumerate(_SHORT.finditer(masked)):
        if n >= MAX_CANDIDATES:
            break
        ref = _short_ref(masked, match)
        if ref is not None:
            hits.append((match.start(), ref))
    hits.sort(key=lambda hit: hit[0])
    for _, ref in hits:
        yield ref


def _mask_fences(text: str) -> str:
    """``text`` with fenced code blocks blanked out (same length, newlines kept)."""
    if "```" not in text and "~~~" not in text:
        return text
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line)
        if fence is None:
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                fence = match.group(1)
                out.append(_blank(line))
            else:
                out.append(line)
            continue
        out.append(_blank(line))
        if (
            match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and not match.group(2).strip()
        ):
            fence = None
    return "".join(out)


def _trim_url(raw: str) -> str:
    """A URL without the punctuation that ends the sentence or the Markdown link around it."""
    while True:
        raw = raw.rstrip(_URL_TRAILING)
        if raw.endswith(")") and raw.count("(") < raw.count(")"):
            raw = raw[:-1]
        else:
            return raw


def _blank(line: str) -> str:
    body = line.rstrip("\r\n")
    return " " * len(body) + line[len(body) :]


def _blank_spans(text: str, spans: Iterable[tuple[int, int]]) -> str:
    parts, at = [], 0
    for start, end in spans:
        parts.append(text[at:start])
        parts.append(" " * (end - start))
        at = end
    parts.append(text[at:])
    return "".join(parts)


def _short_ref(text: str, match: re.Match[str]) -> WorkRef | None:
    project, sigil, digits = match.group("project", "sigil", "number")
    colour_sized = project is None and sigil == "#" and len(digits) in (3, 4, 6, 8)
    if colour_sized and _colour(text, match.start(), match.end()):
        return None
    return _valid(
        kind="issue" if sigil == "#" else "merge_request",
        number=int(digits),
        project=project,
        text=match.group(),
    )


def _colour(text: str, start: int, end: int) -> bool:
    """Whether the all-digit ``#…`` at ``start:end`` reads as a colour in its context."""
    if text[end : end + 1] == ";":
        return True
    line_start = text.rfind("\n", max(0, start - _COLOUR_WINDOW), start) + 1
    before = text[max(line_start, start - _COLOUR_WINDOW) : start]
    if _COLOUR_BEFORE.search(before):
        return True
    line_end = text.find("\n", end, end + _COLOUR_WINDOW)
    after = text[end : line_end if line_end >= 0 else end + _COLOUR_WINDOW]
    return bool(_HEX_WITH_LETTER.search(before) or _HEX_WITH_LETTER.search(after))


def _url_ref(raw: str) -> WorkRef | None:
    """The ref a GitLab or GitHub issue / merge request / pull request URL points at."""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    userinfo, _, host = parts.netloc.rpartition("@")
    host = host.lower()
    if scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    forge: Forge
    if match := _GITLAB_PATH.fullmatch(parts.path):
        forge, segment = "gitlab", match["kind"]
    elif (match := _GITHUB_PATH.fullmatch(parts.path)) and _is_github(host):
        forge, segment = "github", match["kind"]
    else:
        return None
    project, number = match["project"], int(match["number"])
    middle = "/-/" if forge == "gitlab" else "/"
    url = f"{scheme}://{host}/{project}{middle}{segment}/{number}"
    clean = not userinfo and not parts.query and len(raw) <= MAX_URL and raw.isascii()
    return _valid(
        kind="issue" if segment == "issues" else "merge_request",
        number=number,
        project=project,
        url=url,
        forge=forge,
        text=raw if clean else url,
    )


def _is_github(host: str) -> bool:
    name = host.partition(":")[0]
    return name in ("github.com", "www.github.com") or name.startswith("github.")


def _valid(**fields: object) -> WorkRef | None:
    try:
        return WorkRef.model_validate(fields)
    except ValidationError:
        return None
