"""Mentions: every form, word bounds, room membership, order, the router addressed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from tests.routing.helpers import AGENTS, ALL_IN_ROOM, ROUTER_ID, agent, ctx

from salon.routing.mentions import MentionFinder

FINDER = MentionFinder(AGENTS, router_user_id=ROUTER_ID)


def mentioned(body: str = "", **fields: object) -> tuple[str, ...]:
    return FINDER.find(ctx(body, **fields)).agents


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@Coder, please", ("coder",)),
        ("@coder please", ("coder",)),
        ("@CODER", ("coder",)),
        ("hey @coder.", ("coder",)),
        ("(@coder)", ("coder",)),
        ("@coder: fix it", ("coder",)),
        ("@coder\nfix it", ("coder",)),
        ("@salon_coder fix it", ("coder",)),
        ("@SALON_CODER fix it", ("coder",)),
        ("@salon_coder:localhost fix it", ("coder",)),
        ("see https://matrix.to/#/@salon_coder:localhost", ("coder",)),
        # Not mentions:
        ("email@coder.com", ()),
        ("mail me at me.@coder", ()),
        ("@coder.com is a site", ()),
        ("@coders are people", ()),
        ("@coder-bot", ()),
        ("@coder_x", ()),
        ("coder, please", ()),
        ("@salon_coder:elsewhere.org", ()),
        ("@salon_coder:localhost.evil.org", ()),
        ("x@salon_coder:localhost", ()),
        ("https://example.org/@coder", ()),
        ("@", ()),
        ("", ()),
    ],
)
def test_text_forms_word_bounded(body: str, expected: tuple[str, ...]) -> None:
    assert mentioned(body) == expected


def test_pill_from_m_mentions() -> None:
    found = FINDER.find(ctx("Coder: look", mentioned_user_ids=("@salon_coder:localhost",)))
    assert found.agents == ("coder",)
    assert found.forms == {"coder": "pill"}
    assert found.detail() == "coder (pill)"


@pytest.mark.parametrize(
    "html",
    [
        '<a href="https://matrix.to/#/@salon_researcher:localhost">Researcher</a>: hi',
        '<a href="https://matrix.to/#/%40salon_researcher%3Alocalhost">R</a>',
        "<a href='https://matrix.to/#/@salon_researcher:localhost?via=localhost'>R</a>",
        '<a href="matrix:u/salon_researcher:localhost?action=chat">R</a>',
    ],
)
def test_link_in_formatted_body(html: str) -> None:
    found = FINDER.find(ctx("R: hi", formatted_body=html))
    assert found.agents == ("researcher",)
    assert found.forms == {"researcher": "link"}


def test_link_to_someone_else_is_not_a_mention() -> None:
    html = '<a href="https://matrix.to/#/@salon_coder:elsewhere">Coder</a>'
    assert mentioned("Coder", formatted_body=html) == ()


def test_only_agents_in_the_room() -> None:
    room = frozenset({"researcher"})
    assert mentioned("@coder and @researcher", agents_in_room=room) == ("researcher",)
    pill = ("@salon_coder:localhost",)
    assert mentioned("Coder", mentioned_user_ids=pill, agents_in_room=room) == ()
    assert mentioned("@coder", agents_in_room=frozenset()) == ()


def test_order_of_first_appearance_and_dedup() -> None:
    body = "@home then @researcher, @coder and @home again, @salon_researcher"
    assert mentioned(body) == ("home", "researcher", "coder")


def test_pills_are_placed_where_their_label_shows() -> None:
    pills = ("@salon_coder:localhost", "@salon_researcher:localhost")
    assert mentioned("Researcher and Coder: hi", mentioned_user_ids=pills) == (
        "researcher",
        "coder",
    )
    # Without a visible label: after the text mentions, in m.mentions order.
    assert mentioned("@home x", mentioned_user_ids=pills) == ("home", "coder", "researcher")


def test_agent_never_mentions_itself() -> None:
    found = mentioned("@coder @researcher", sender="@salon_coder:localhost", sender_agent="coder")
    assert found == ("researcher",)


def test_longer_label_wins_over_a_shorter_one_inside_it() -> None:
    code = agent("code", "Code")
    review = agent("review", "Code Review")
    finder = MentionFinder((code, review), router_user_id=ROUTER_ID)
    room = frozenset({"code", "review"})
    assert finder.find(ctx("@Code Review this", agents_in_room=room)).agents == ("review",)
    assert finder.find(ctx("@code  review", agents_in_room=room)).agents == ("review",)
    assert finder.find(ctx("@Code, review", agents_in_room=room)).agents == ("code",)
    assert finder.find(ctx("@Code this", agents_in_room=room)).agents == ("code",)


def test_unicode_labels() -> None:
    helper = agent("pomoshnik", "Помощник")
    finder = MentionFinder((helper,), router_user_id=ROUTER_ID)
    room = frozenset({"pomoshnik"})
    assert finder.find(ctx("@помощник, привет", agents_in_room=room)).agents == ("pomoshnik",)
    assert finder.find(ctx("@Помощники", agents_in_room=room)).agents == ()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ("@salon what now?", {}),
        ("@Salon, help", {}),
        ("hi @salon:localhost", {}),
        ("Salon: help", {"mentioned_user_ids": ("@salon:localhost",)}),
        ("x", {"formatted_body": '<a href="https://matrix.to/#/@salon:localhost">S</a>'}),
    ],
)
def test_router_addressed(body: str, fields: dict[str, object]) -> None:
    found = FINDER.find(ctx(body, **fields))
    assert found.router_addressed
    assert found.agents == ()


@pytest.mark.parametrize("body", ["salon is nice", "@salon_coder hi", "me@salon.org", "@salons"])
def test_router_not_addressed(body: str) -> None:
    assert not FINDER.find(ctx(body)).router_addressed


class _Scans:
    """A target's pattern, counting the bodies it scans."""

    def __init__(self, pattern: Any, scanned: list[str]) -> None:
        self.pattern, self.scanned = pattern, scanned

    def finditer(self, body: str) -> Any:
        self.scanned.append(body)
        return self.pattern.finditer(body)


def test_a_message_without_an_at_sign_is_not_scanned_per_agent() -> None:
    """Every text form starts with "@": a message without one (most) is not scanned
    once per agent, which with a thousand agents was a thousand scans a message."""
    finder = MentionFinder(AGENTS, router_user_id=ROUTER_ID)
    scanned: list[str] = []
    finder._targets = [replace(t, pattern=_Scans(t.pattern, scanned)) for t in finder._targets]
    plain = ctx("coder and writer, a long message without a mention " * 20)
    assert finder.find(plain).agents == ()
    assert scanned == []
    assert finder.find(ctx("hi @coder")).agents == ("coder",)
    assert scanned


def _scanning(finder: MentionFinder) -> list[str]:
    """Which targets' patterns ``finder`` runs over a body, by their user ids."""
    scanned: list[str] = []

    class Named(_Scans):
        def finditer(self, body: str) -> Any:
            scanned.append(self.user_id)
            return self.pattern.finditer(body)

    def wrap(t: Any) -> Any:
        named = Named(t.pattern, [])
        named.user_id = t.user_id
        return replace(t, pattern=named)

    finder._targets = [wrap(t) for t in finder._targets]
    finder._router = wrap(finder._router)
    return scanned


def test_a_message_with_an_at_sign_is_scanned_only_for_names_that_may_follow_it() -> None:
    """The lobby holds every agent: a message with an "@" was scanned once per agent
    (half a second of one core for a long message among a thousand agents)."""
    many = [agent(f"a{n}", f"Agent {n}") for n in range(1000)]
    finder = MentionFinder([*many, *AGENTS], router_user_id=ROUTER_ID)
    scanned = _scanning(finder)
    everyone = frozenset([*ALL_IN_ROOM, *(a.agent_id for a in many)])
    body = "hi @coder, and @Agent 7 too; write to me@example.org " * 10
    assert finder.find(ctx(body, agents_in_room=everyone)).agents == ("coder", "a7")
    # coder's and every "Agent n" label's first word ("agent"), not the other agents'.
    assert "@salon_coder:localhost" in scanned and "@salon_researcher:localhost" not in scanned
    assert len(set(scanned)) <= 1000 + 2 and "@salon_a7:localhost" in scanned
    scanned.clear()
    finder.find(ctx("ask @salon_a42:localhost please", agents_in_room=everyone))
    # Only names the text after the "@" begins with: the router's, salon_a4's, salon_a42's.
    assert set(scanned) == {"@salon:localhost", "@salon_a4:localhost", "@salon_a42:localhost"}


@pytest.mark.parametrize(
    "body",
    [
        "@Coder, please",
        "@CODER and @researcher",
        "@salon_coder:localhost fix it",
        "@@coder",
        "email@coder.com",
        "@home @Home @HOME",
        "@salon",
        "@salon_home: and @Researcher.",
        "@Ｃoder",  # a fullwidth letter: not ASCII, every target scanned
        "@ſalon_coder",  # long s: IGNORECASE folds it to "s"
        "@coder" + "x" * 100,
    ],
)
def test_the_index_finds_what_scanning_every_target_finds(body: str) -> None:
    indexed = MentionFinder(AGENTS, router_user_id=ROUTER_ID)
    everyone = MentionFinder(AGENTS, router_user_id=ROUTER_ID)
    everyone._by_head, everyone._always = {}, set(range(len(AGENTS) + 1))
    assert indexed.find(ctx(body)) == everyone.find(ctx(body))
