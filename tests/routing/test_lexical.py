"""The lexical scorer: tokens, stems, weights, stopwords, determinism, ties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.routing.helpers import AGENTS, CODER, HOME, RESEARCHER, agent

from salon.routing.lexical import LexicalScorer, Score, stem, tokens

SCORER = LexicalScorer(AGENTS)


@pytest.mark.parametrize(
    ("word", "root"),
    [
        ("scripts", "script"),
        ("papers", "paper"),
        ("libraries", "library"),
        ("boxes", "box"),
        ("patches", "patch"),
        ("class", "class"),
        ("status", "status"),
        ("analysis", "analysis"),
        ("bus", "bus"),
        ("coder's", "coder"),
        ("кода", "код"),
        ("статьи", "стать"),
        ("статью", "стать"),
        ("дом", "дом"),
    ],
)
def test_stem(word: str, root: str) -> None:
    assert stem(word) == root


def test_tokens_drop_stopwords_digits_and_punctuation() -> None:
    assert tokens("Please, help me with THE Python_scripts 42!") == [
        ("python", "python"),
        ("script", "scripts"),
    ]
    assert tokens("Помоги мне найти статьи про ёжиков") == [
        ("найт", "найти"),
        ("стать", "статьи"),
        ("ежик", "ежиков"),
    ]


def test_label_weighs_two_description_one() -> None:
    scores = {s.agent_id: s for s in SCORER.scores("the coder should review python", AGENTS)}
    assert scores["coder"] == Score("coder", 4.0, ("coder", "review", "python"))
    assert scores["researcher"].score == 0
    assert scores["coder"].detail() == "score 4.0 ('coder', 'review', 'python')"


def test_words_count_once() -> None:
    once = SCORER.best("python", AGENTS)
    many = SCORER.best("python python Python PYTHON", AGENTS)
    assert once == many == Score("coder", 1.0, ("python",))


def test_best_picks_highest_and_ties_go_to_config_order() -> None:
    assert SCORER.best("summarise these papers", AGENTS) == Score(
        "researcher", 2.0, ("summarise", "papers")
    )
    assert SCORER.best("turn on the lights", AGENTS) == Score("home", 1.0, ("lights",))
    # "web" (researcher) and "heating" (home) score 1 each: the earlier agent wins.
    assert SCORER.best("web heating", AGENTS) == Score("researcher", 1.0, ("web",))
    assert SCORER.best("web heating", (HOME, RESEARCHER)) == Score("home", 1.0, ("heating",))


def test_zero_score_is_no_decision() -> None:
    assert SCORER.best("good morning", AGENTS) is None
    assert SCORER.best("", AGENTS) is None
    assert SCORER.best("the and of", AGENTS) is None


def test_candidates_restrict_the_choice() -> None:
    assert SCORER.best("python code", (RESEARCHER, HOME)) is None
    assert SCORER.best("python code", (CODER,)) is not None


def test_agents_unknown_to_the_scorer_are_scored_from_their_info() -> None:
    other = agent("chef", "Chef", "Cooks recipes")
    assert SCORER.best("recipes please", (CODER, other)) == Score("chef", 1.0, ("recipes",))


def test_russian_descriptions() -> None:
    translator = agent("translator", "Переводчик", "Переводит тексты и документы")
    scorer = LexicalScorer((CODER, translator))
    best = scorer.best("переведи этот документ", (CODER, translator))
    assert best is not None and best.agent_id == "translator"


@given(st.text(max_size=300))
def test_deterministic_and_never_raises(text: str) -> None:
    first = SCORER.scores(text, AGENTS)
    assert first == LexicalScorer(AGENTS).scores(text, AGENTS)
    assert all(s.score >= 0 for s in first)
