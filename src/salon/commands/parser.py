"""Parsing of ``!commands`` typed by users. Pure: no Matrix, no store.

Everything here takes untrusted text and never raises on it: control
characters (NUL, newlines, C1) become spaces, bidirectional overrides and other
invisible direction characters are dropped, whitespace is collapsed to single
spaces, and every result is bounded in length.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

MAX_ARGS_CHARS = 500
MAX_NAME_CHARS = 32
"""The longest command name kept in :attr:`Command.name`."""

# Characters that change how surrounding text is displayed without being
# visible themselves: bidi embeddings/overrides/isolates, directional marks,
# zero-width space, word joiner and the byte-order mark.
_INVISIBLE = frozenset(
    "\u061c\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"
)

_COMMAND_RE = re.compile(r"!([A-Za-z]+)(?: (.*))?")
_NUMERIC_RE = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?", re.ASCII)
_INDEX_RE = re.compile(r"\+?([0-9]+)", re.ASCII)
_MAX_INDEX_DIGITS = 9


@dataclass(frozen=True)
class Command:
    """A parsed ``!command``, known or not (:mod:`salon.commands.registry` knows)."""

    name: str
    """What the user typed after ``!``, lowercased, at most 32 characters."""
    args: str
    """The rest, cleaned and collapsed, at most :data:`MAX_ARGS_CHARS` characters."""


def clean_text(text: str, max_len: int | None = None) -> str:
    """``text`` with control characters (NUL, newlines, C1) turned into spaces,
    invisible direction characters (RTL overrides and the like) and lone
    surrogates dropped, whitespace runs collapsed to one space, stripped, and
    cut to ``max_len`` characters."""
    kept = "".join(_clean_char(ch) for ch in text)
    collapsed = " ".join(kept.split())
    if max_len is not None:
        collapsed = collapsed[: max(max_len, 0)].rstrip()
    return collapsed


def _clean_char(ch: str) -> str:
    if ch in _INVISIBLE:
        return ""
    category = unicodedata.category(ch)
    if category == "Cc":  # C0, DEL and C1 controls, newlines and NUL included
        return " "
    if category == "Cs":  # a lone surrogate cannot be encoded or sent
        return ""
    return ch


def strip_reply_fallback(body: str) -> str:
    """``body`` without a leading Matrix reply fallback: quoted ``>`` lines
    followed by a blank line. A body that is only quoted lines is unchanged."""
    lines = body.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i == 0 or i >= len(lines) or lines[i].strip():
        return body
    return "\n".join(lines[i + 1 :])


def parse_command(body: str) -> Command | None:
    """The command in a message body, or None for an ordinary message.

    A command is ``!`` immediately followed by ASCII letters (the name), then
    whitespace or the end of the message, as the first visible text after any
    reply fallback. ``!``, ``!!``, ``! agent``, ``!123`` and ``!agent2`` are
    ordinary messages.
    """
    if "!" not in body:
        # Nearly every message: cleaning (a look-up per character) adds no "!".
        return None
    match = _COMMAND_RE.fullmatch(clean_text(strip_reply_fallback(body)))
    if match is None:
        return None
    typed = match.group(1).lower()
    return Command(
        name=typed[:MAX_NAME_CHARS],
        args=(match.group(2) or "")[:MAX_ARGS_CHARS].rstrip(),
    )


@dataclass(frozen=True)
class AgentChoice:
    """The agent a user picked: by 1-based ``index`` or by ``agent_id`` (exactly one)."""

    index: int | None = None
    agent_id: str | None = None


class ChoiceError(StrEnum):
    EMPTY = "empty"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN = "unknown"


def parse_agent_choice(args: str, agent_ids: Sequence[str]) -> AgentChoice | ChoiceError:
    """What ``!agent <n|id>`` picked out of ``agent_ids`` (in list order).

    ASCII digits with an optional sign are a 1-based position; a number outside
    ``1..len(agent_ids)`` (or with a fraction) is ``OUT_OF_RANGE``. Anything else
    is an agent id, matched case-insensitively, optionally written ``@id`` (the
    way to pick an agent whose id is all digits). The returned id is spelled as
    in ``agent_ids``.
    """
    choice = clean_text(args, MAX_ARGS_CHARS)
    if not choice:
        return ChoiceError.EMPTY
    if _NUMERIC_RE.fullmatch(choice):
        index = _small_int(choice)
        if index is not None and 1 <= index <= len(agent_ids):
            return AgentChoice(index=index)
        return ChoiceError.OUT_OF_RANGE
    wanted = choice.removeprefix("@").casefold()
    if wanted:
        for agent_id in agent_ids:
            if agent_id.casefold() == wanted:
                return AgentChoice(agent_id=agent_id)
    return ChoiceError.UNKNOWN


def parse_name(args: str, *, max_len: int = 80) -> str | None:
    """A chat or snapshot name for ``!new``/``!rename``/``!save``: cleaned,
    collapsed, cut to ``max_len``; None if nothing is left."""
    return clean_text(args, max_len) or None


def parse_index(args: str, n: int) -> int | None:
    """A 1-based choice out of ``n`` listed items (an answer to ``!load``), or None."""
    match = _INDEX_RE.fullmatch(clean_text(args, MAX_ARGS_CHARS))
    if match is None:
        return None
    index = _small_int(match.group(0))
    return index if index is not None and 1 <= index <= n else None


def _small_int(numeric: str) -> int | None:
    """The integer value of a sign-and-ASCII-digits string, or None if it has a
    fraction or too many digits to be any list position."""
    if not re.fullmatch(r"[+-]?[0-9]+", numeric, re.ASCII):
        return None
    sign = -1 if numeric[0] == "-" else 1
    digits = numeric.lstrip("+-").lstrip("0") or "0"
    if len(digits) > _MAX_INDEX_DIGITS:
        return None
    return sign * int(digits)
