"""Trimming history to a token budget."""

from salon.agents.backend import ChatMessage
from salon.agents.history import estimate_tokens, trim_history


def _turn(i: int, size: int = 40) -> list[ChatMessage]:
    return [
        ChatMessage("user", f"q{i} " + "x" * size),
        ChatMessage("assistant", f"a{i} " + "y" * size),
    ]


def test_estimate_grows_with_text() -> None:
    assert estimate_tokens("") == 4
    assert estimate_tokens("x" * 400) == 104


def test_oldest_whole_turns_go_first_and_turns_are_never_split() -> None:
    turns = [_turn(i) for i in range(10)]
    per_turn = sum(estimate_tokens(m.content) for m in turns[0])
    budget = estimate_tokens("new") + estimate_tokens("persona") + 3 * per_turn + per_turn // 2
    kept = trim_history(turns, budget=budget, persona="persona", text="new")
    assert [m.content[:2] for m in kept] == ["q7", "a7", "q8", "a8", "q9", "a9"]


def test_persona_and_message_stay_even_over_budget() -> None:
    kept = trim_history([_turn(0)], budget=1, persona="p" * 1000, text="t" * 1000)
    assert kept == []  # no history fits, but nothing raised: the caller still sends both


def test_everything_fits_in_a_big_budget() -> None:
    turns = [_turn(i) for i in range(3)]
    assert len(trim_history(turns, budget=10_000, persona=None, text="hi")) == 6
