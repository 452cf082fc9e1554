"""Comments that follow a value, kept where they belong when the value is edited.

ruamel keeps a comment with the value just before it, so the comments after an
agent's last value that belong to what follows it (a header of the next section,
at the agent's own indentation or less) are moved onto whatever now comes before
that: adding an agent at the end of ``agents:`` does not put it under the next
section's header, and removing one does not take the next section's header away
with it.

ruamel keeps the comment lines (and blank lines) after a value as one token on the
deepest last scalar before them: "the tail". Its first segment is the comment on
the value's own line, except after a block scalar (`|`, `>`), where every line is
a full line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString
from ruamel.yaml.tokens import CommentToken


@dataclass
class _Tail:
    eol: str | None  # the comment on the value's own line ('' none); None: block scalar
    lines: list[str]  # full lines after it, each with its indentation, without newline
    token: CommentToken | None = field(default=None, repr=False)


def _is_block(node: Any) -> bool:
    return (
        isinstance(node, CommentedMap | CommentedSeq)
        and bool(_keys(node))
        and not node.fa.flow_style()
    )


def _keys(container: Any) -> list[Any]:
    """The keys (indexes) written in ``container``: not those a ``<<:`` merge brings."""
    if isinstance(container, CommentedMap):
        return [key for key, _ in container.non_merged_items()]
    return list(range(len(container)))


def _last_key(container: CommentedMap | CommentedSeq) -> Any:
    return _keys(container)[-1]


def _tail_slot(container: Any, key: Any) -> tuple[Any, Any]:
    node = container[key]
    while _is_block(node):
        container, key = node, _last_key(node)
        node = container[key]
    return container, key


def _slot_index(container: Any) -> int:
    return 0 if isinstance(container, CommentedSeq) else 2


def _read_tail(container: Any, key: Any) -> _Tail:
    container, key = _tail_slot(container, key)
    block = isinstance(container[key], LiteralScalarString | FoldedScalarString)
    entry = container.ca.items.get(key)
    index = _slot_index(container)
    token = entry[index] if entry and len(entry) > index else None
    if token is None:
        return _Tail(None if block else "", [], None)
    value = token.value
    segments = value.split("\n")
    if value.endswith("\n"):
        segments.pop()
    head, rest = (segments[0], segments[1:]) if segments else ("", [])
    if block:
        column = getattr(token, "column", 0) or 0
        first = " " * column + head if head else ""
        return _Tail(None, [first, *rest], token)
    return _Tail(head, rest, token)


def _write_tail(container: Any, key: Any, tail: _Tail) -> None:
    container, key = _tail_slot(container, key)
    body = "".join(line + "\n" for line in tail.lines)
    value = body  # after a block scalar every line is a full line
    if tail.eol is not None and (tail.eol or body):
        value = tail.eol + "\n" + body
    index = _slot_index(container)
    entry = container.ca.items.setdefault(key, [None, None, None, None])
    if not value:
        entry[index] = None
    elif tail.token is not None and tail.eol:
        tail.token.value = value  # keeps the column of the comment on the value's line
    else:
        entry[index] = CommentToken(value, CommentMark(0), None)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _item_column(container: Any) -> int:
    col = getattr(container.lc, "col", None)
    return int(col) if col is not None else 0


def _split(lines: list[str], column: int) -> tuple[list[str], list[str], list[str]]:
    """(own, blanks, following): ``following`` starts at the first comment line at
    ``column`` or left of it (what comes next, not this item), ``blanks`` are the
    blank lines just before it (or at the end, when nothing follows)."""
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.lstrip().startswith("#") and _indent(line) <= column
        ),
        len(lines),
    )
    blank = start
    while blank > 0 and not lines[blank - 1].strip():
        blank -= 1
    return lines[:blank], lines[blank:start], lines[start:]


def _attach_before(container: Any, index: int, lines: list[str]) -> None:
    """Put comment lines just before item ``index`` of ``container`` (or at its end)."""
    if not lines:
        return
    if index > 0:
        prev = _keys(container)[index - 1]
        tail = _read_tail(container, prev)
        if tail.lines and not tail.lines[-1].strip():
            while lines and not lines[0].strip():
                lines = lines[1:]
        tail.lines = [*tail.lines, *lines]
        _write_tail(container, prev, tail)
        return
    if container.ca.comment is None:
        container.ca.comment = [None, []]
    if container.ca.comment[1] is None:
        container.ca.comment[1] = []
    for line in lines:
        text = line.strip()
        mark = CommentMark(_indent(line) if text else 0)
        container.ca.comment[1].append(CommentToken(text + "\n", mark, None))


def _delete(container: Any, key: Any) -> list[str]:
    """Delete ``container[key]`` keeping the comments after it that belong to what
    follows; returns them if the container is left empty (for the caller to place)."""
    keys = _keys(container)
    index = keys.index(key)
    _, blanks, following = _split(_read_tail(container, key).lines, _item_column(container))
    del container[key]
    leftover = [*blanks, *following] if following else []
    if not _keys(container):
        return leftover
    _attach_before(container, index, leftover)
    return []


def _delete_key(parent: Any, key: Any) -> None:
    """Delete ``parent[key]``; comments it leaves over go where it was."""
    index = _keys(parent).index(key)
    leftover = _delete(parent, key)
    if leftover and _keys(parent):
        _attach_before(parent, index, leftover)


def _append(container: CommentedMap, key: str, value: CommentedMap) -> None:
    """Add ``key: value`` at the end of a block mapping, before the comments that
    come after its last item but belong to what follows it."""
    if not _is_block(container):
        container[key] = value
        return
    last = _last_key(container)
    tail = _read_tail(container, last)
    own, blanks, following = _split(tail.lines, _item_column(container))
    container[key] = value
    if following:
        tail.lines = [*own, *blanks]
        _write_tail(container, last, tail)
    if blanks or following:
        _write_tail(container, key, _Tail("", [*blanks, *following]))
