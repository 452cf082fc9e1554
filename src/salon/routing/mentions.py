"""Who a message mentions: pills, matrix.to links, user ids and ``@name`` in the text.

Mention forms, for an agent ``@salon_coder:server`` labelled ``Coder``:

- a pill: the user id in ``m.mentions.user_ids``;
- a link to the user in ``formatted_body`` (``https://matrix.to/#/@salon_coder:server``
  or ``matrix:u/salon_coder:server``, percent-encoded or not);
- the full user id in the body;
- ``@Coder`` or ``@salon_coder`` in the body: case-insensitive and word-bounded,
  so ``"@coder, please"`` is a mention but ``"email@coder.com"`` and
  ``"@salon_coder:elsewhere"`` (someone else's user) are not. Labels of several
  words match with any whitespace between them; when one match lies inside a
  longer one (``@Code`` in ``@Code Review``), the longer wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from salon.ids import localpart_of_user
from salon.routing.context import AgentInfo, MessageContext

__all__ = ["MentionFinder", "Mentions"]

# Not after a word character, '@' or an e-mail/URL-ish character: "email@coder.com".
_BEFORE_NAME = r"(?<![\w@.+/\-])@"
# Not followed by more of a name, nor by ".com" / ":server" (a longer name or another user).
_AFTER = r"(?![\w\-]|[.:]\w)"
_LINK_RE = re.compile(r"(?:https?://matrix\.to/#/|matrix:u/)([^\"'\s<>?&#]+)", re.IGNORECASE)
# Sorts after every position in the body.
_UNPLACED = 1 << 62


@dataclass(frozen=True)
class Mentions:
    """The agents a message mentions (first appearance first) and how each was mentioned."""

    agents: tuple[str, ...] = ()
    forms: dict[str, str] = field(default_factory=dict)
    router_addressed: bool = False

    def detail(self) -> str:
        """``coder (pill), researcher (@label)`` — for the decision's detail."""
        return ", ".join(f"{agent} ({self.forms[agent]})" for agent in self.agents)


@dataclass(frozen=True)
class _Target:
    key: str | None  # agent id; None for the router
    user_id: str  # lowercased
    pattern: re.Pattern[str]  # the text forms, one named group each
    label: re.Pattern[str] | None  # the bare label, only to place a pill in the body
    heads: tuple[str, ...] = ()  # lowercased first word of each text form, after its "@"


# Longest text after an "@" looked up in the index of first words; a longer first
# word puts its target among those always scanned.
_HEAD_MAX = 64
# The text after an "@" that may begin a name: up to whitespace or an "@".
_AFTER_AT = re.compile(rf"@([^\s@]{{1,{_HEAD_MAX}}})")


def _head(text: str) -> str | None:
    """The lowercased first word of a name, when plain lowercasing matches what
    ``re.IGNORECASE`` matches (ASCII); None: the target is always scanned."""
    words = text.split()
    head = words[0].lower() if words else ""
    return head if head.isascii() and 0 < len(head) <= _HEAD_MAX else None


def _words(text: str) -> str:
    return r"\s+".join(re.escape(word) for word in text.split())


def _target(key: str | None, user_id: str, names: Iterable[tuple[str, str]]) -> _Target:
    alternatives = [rf"(?P<user_id>(?<![\w@]){re.escape(user_id)}{_AFTER})"]
    label: re.Pattern[str] | None = None
    for group, name in names:
        if not name.split():
            continue
        alternatives.append(rf"(?P<{group}>{_BEFORE_NAME}{_words(name)}{_AFTER})")
        if group == "label":
            label = re.compile(rf"(?<![\w@]){_words(name)}(?!\w)", re.IGNORECASE)
    pattern = re.compile("|".join(alternatives), re.IGNORECASE)
    heads = [_head(user_id[1:])] + [_head(name) for _, name in names if name.split()]
    plain = tuple(h for h in heads if h is not None)
    # A target with a form the index cannot hold has no heads: it is always scanned.
    return _Target(key, user_id.lower(), pattern, label, plain if len(plain) == len(heads) else ())


def _linked_users(formatted_body: str | None) -> list[str]:
    """User ids linked from an HTML body, lowercased, in order."""
    users: list[str] = []
    for match in _LINK_RE.finditer(formatted_body or ""):
        ref = unquote(match.group(1))
        if match.group(0).lower().startswith("matrix:"):
            ref = "@" + ref
        if ref.startswith("@"):
            users.append(ref.lower())
    return users


class MentionFinder:
    """Finds mentions of a fixed set of agents (and the router) in messages."""

    def __init__(self, agents: Sequence[AgentInfo], *, router_user_id: str) -> None:
        self._targets = [
            _target(a.agent_id, a.user_id, (("label", a.label), ("localpart", a.localpart)))
            for a in agents
        ]
        router_localpart = localpart_of_user(router_user_id)
        self._router = _target(None, router_user_id, (("localpart", router_localpart),))
        # First word → targets: a message is scanned only for the targets whose name
        # could begin after one of its "@"s (the lobby of a thousand agents: a thousand
        # scans of every message with an "@" otherwise).
        self._by_head: dict[str, list[int]] = {}  # positions in [*targets, router]
        self._always: set[int] = set()
        for n, target in enumerate([*self._targets, self._router]):
            if not target.heads:
                self._always.add(n)
            for head in set(target.heads):
                self._by_head.setdefault(head, []).append(n)

    def find(self, ctx: MessageContext) -> Mentions:
        """The agents ``ctx`` mentions that are in its room, not counting the sender itself."""
        pills = [user.lower() for user in ctx.mentioned_user_ids if isinstance(user, str)]
        links = _linked_users(ctx.formatted_body)
        first = self._first_in_text(ctx.body)
        found: list[tuple[int, int, str, str]] = []
        for rank, target in enumerate(self._targets):
            key = target.key
            if key is None or key not in ctx.agents_in_room or key == ctx.sender_agent:
                continue
            if key in first:
                found.append((first[key][0], rank, key, first[key][1]))
            elif target.user_id in pills or target.user_id in links:
                form = "pill" if target.user_id in pills else "link"
                found.append((_pill_position(target, ctx.body, pills, links), rank, key, form))
        found.sort()
        router = self._router
        addressed = None in first or router.user_id in pills or router.user_id in links
        return Mentions(
            agents=tuple(key for _, _, key, _ in found),
            forms={key: form for _, _, key, form in found},
            router_addressed=addressed,
        )

    def _first_in_text(self, body: str) -> dict[str | None, tuple[int, str]]:
        """Target key → (position, form) of its first text mention not inside a longer one."""
        if "@" not in body:
            # Every text form starts with one; most messages have none, and each target's
            # pattern would scan the whole body (a thousand agents: a thousand scans).
            return {}
        spans: list[tuple[int, int, _Target, str]] = []
        for target in self._candidates(body):
            for match in target.pattern.finditer(body):
                form = _TEXT_FORMS[match.lastgroup or "user_id"]
                spans.append((match.start(), -match.end(), target, form))
        spans.sort(key=lambda span: (span[0], span[1]))
        first: dict[str | None, tuple[int, str]] = {}
        cover = (-1, -1)  # the span reaching furthest right so far
        for start, neg_end, target, form in spans:
            end = -neg_end
            inside = end <= cover[1] and (start, end) != cover
            if end > cover[1]:
                cover = (start, end)
            if not inside and target.key not in first:
                first[target.key] = (start, form)
        return first

    def _candidates(self, body: str) -> list[_Target]:
        """The targets whose name may follow an "@" of ``body``, in the targets' order."""
        every = [*self._targets, self._router]
        found = set(self._always)
        for match in _AFTER_AT.finditer(body):
            after = match.group(1)
            if not after.isascii():
                return every  # case folding beyond ASCII: scan them all
            after = after.lower()
            for end in range(1, len(after) + 1):
                found.update(self._by_head.get(after[:end], ()))
        return [every[n] for n in sorted(found)]


_TEXT_FORMS = {"user_id": "user id", "label": "@label", "localpart": "@localpart"}


def _pill_position(target: _Target, body: str, pills: list[str], links: list[str]) -> int:
    """Where a pill or link mention sorts: where its label shows in the body, else after all."""
    # Element puts the pill's display name in the plain body ("Coder: hi").
    shown = target.label.search(body) if target.label else None
    if shown:
        return shown.start()
    if target.user_id in pills:
        return _UNPLACED + pills.index(target.user_id)
    return _UNPLACED + len(pills) + links.index(target.user_id)
