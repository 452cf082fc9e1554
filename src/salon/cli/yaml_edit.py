"""Round-trip editing of a config file: comments, key order and quoting kept.

A :class:`Document` is a config file loaded with ruamel.yaml's round-trip mode:

- the indentation is the one that writes the untouched file back unchanged
  (tried among the usual ones; a file no setting reproduces is still edited,
  with a warning that some other lines get re-indented);
- the lines the YAML writer alone would change are spliced back as they were
  written (:func:`splice`);
- the result is written atomically (temp file + rename, same mode), only if
  nobody changed the file in the meantime (:func:`write_atomic`).

Keeping the comments that follow a value in place on an edit is
:mod:`salon.cli.yaml_comments`.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tempfile
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from salon._exceptions import SalonError


class EditRefused(SalonError):
    """An edit of the config file that is not made (the file is unchanged)."""


def _yaml(mapping: int, sequence: int, offset: int) -> YAML:
    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _differing_lines(a: str, b: str) -> int:
    matcher = SequenceMatcher(None, a.splitlines(), b.splitlines(), autojunk=False)
    return sum(
        max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
    )


def splice(original: str, noop: str, edited: str) -> str | None:
    """The changes from ``noop`` to ``edited`` applied to ``original``.

    ``noop`` is the unedited document as the YAML writer writes it, which may differ
    from ``original`` (the file as written) in a few lines: ruamel cannot reproduce
    every spelling (``null`` written as nothing, the comment after an anchor moved).
    Splicing leaves every line the edit does not touch exactly as it was. None if
    a change falls on a line the writer writes differently.
    """
    o, n, e = (text.splitlines(keepends=True) for text in (original, noop, edited))
    to_o: dict[int, int] = {}
    for a, b, size in SequenceMatcher(None, n, o, autojunk=False).get_matching_blocks():
        to_o.update((a + k, b + k) for k in range(size))
    out: list[str] = []
    pos = 0  # the next line of the original to copy
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, n, e, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 < i2:  # lines of noop replaced or deleted: they must be as in the original
            span = [to_o.get(i) for i in range(i1, i2)]
            first = span[0]
            if first is None or span != list(range(first, first + len(span))):
                return None
            start, end = first, first + len(span)
        else:  # lines inserted before noop's line i1: between two lines kept as written
            before = to_o.get(i1 - 1) if i1 > 0 else -1
            after = to_o.get(i1) if i1 < len(n) else len(o)
            if before is None or after is None or after != before + 1:
                return None
            start = end = after
        if start < pos:
            return None
        out += o[pos:start] + e[j1:j2]
        pos = end
    out += o[pos:]
    return "".join(out)


def _same_data(a: str, b: str) -> bool:
    safe = YAML(typ="safe", pure=True)
    try:
        return bool(safe.load(a) == safe.load(b))
    except YAMLError:
        return False


@dataclass
class Document:
    """A config file loaded for editing, and how to write it back as it was written."""

    path: Path
    raw: str  # the file's text as read (line endings kept)
    data: CommentedMap
    yaml: YAML
    noop: str  # the unedited document as the writer writes it
    reformatted: int = 0  # lines outside the edit the last text() writes differently

    @classmethod
    def read(cls, path: Path) -> Document:
        """Load ``path`` (which the loader accepts) for a round-trip edit."""
        with open(path, encoding="utf-8", newline="") as f:
            raw = f.read()
        text = raw.replace("\r\n", "\n")
        try:
            _, indent, block_seq = load_yaml_guess_indent(text)
        except YAMLError as e:
            raise EditRefused(f"{path}: cannot read it for editing: {e}") from None
        indent = indent or 2
        offset = block_seq or 0
        # The indentation that writes the file back as it is (new lines get it too).
        tries = [(indent, max(indent, offset + 2), offset)]
        tries += [(m, s, o) for m in (2, 4) for s, o in ((2, 0), (4, 2), (4, 0), (3, 1), (6, 4))]
        best: tuple[int, YAML, Any, str] | None = None
        for mapping, sequence, off in tries:
            yaml = _yaml(mapping, sequence, off)
            data = yaml.load(text)
            noop = _dump(yaml, data)
            diff = _differing_lines(text, noop)
            if best is None or diff < best[0]:
                best = (diff, yaml, data, noop)
            if diff == 0:
                break
        assert best is not None
        _, yaml, data, noop = best
        if not isinstance(data, CommentedMap):
            raise EditRefused(f"{path}: the top level is not a mapping")
        return cls(path, raw, data, yaml, noop)

    def text(self) -> str:
        """The file's text with the edits made so far: the lines they do not touch as
        they were (if the writer alone would change some, they are spliced in)."""
        original = self.raw.replace("\r\n", "\n")
        edited = _dump(self.yaml, self.data)
        out = edited
        self.reformatted = 0
        if self.noop != original:
            spliced = splice(original, self.noop, edited)
            if spliced is not None and _same_data(spliced, edited):
                out = spliced
            else:
                self.reformatted = _differing_lines(original, self.noop)
        return out.replace("\n", "\r\n") if "\r\n" in self.raw else out

    def mapping(self, key: str) -> CommentedMap | None:
        """The top-level mapping ``key`` (None if absent or not a mapping)."""
        value = self.data.get(key)
        return value if isinstance(value, CommentedMap) else None

    def line_of(self, container: Any, key: Any) -> int | None:
        """1-based line of ``container[key]`` in the file, when known."""
        with contextlib.suppress(Exception):
            if isinstance(container, CommentedMap):
                return int(container.lc.key(key)[0]) + 1
            if isinstance(container, CommentedSeq):
                return int(container.lc.item(key)[0]) + 1
        return None


def write_atomic(path: Path, text: str, expected: str) -> None:
    """Replace ``path``'s content with ``text`` (temp file + rename, same mode), only
    if it still holds ``expected``."""
    target = path.resolve()
    with open(target, encoding="utf-8", newline="") as f:
        if f.read() != expected:
            raise EditRefused(f"{path} changed while it was being edited; run the command again")
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
