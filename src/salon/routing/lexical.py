"""The offline AI router: scores agents by the words a message shares with them.

Deterministic and dependency-free. Text is lowercased and split into unicode
word tokens; stopwords (a small English and Russian list) are dropped, and a
light stemmer trims plural and common inflection endings so that "scripts"
meets "script" and "кода" meets "код". Each distinct message word scores 2 if
it is in the agent's label (or id) and 1 if it is in its description. The best
score above 0 wins; ties go to the agent listed first in the config.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from salon.routing.context import AgentInfo

__all__ = ["LexicalScorer", "Score", "stem", "tokens"]

LABEL_WEIGHT = 2.0
DESCRIPTION_WEIGHT = 1.0

_WORD_RE = re.compile(r"[^\W_]+")
# Lowercase, with "ё" written "е" (tokens are normalised the same way).
_STOPWORD_TEXT = """
    a about after again all also am an and any are as at be been being but by can could
    did do does doing for from get got had has have having he her here hers him his how i
    if in into is it its just let me more most my no nor not now of off on once only or
    other our out over own please same she should so some such than thank thanks that the
    their them then there these they this those through to too under until up us very
    want was we were what when where which while who whom why will with would you your
    hi hello hey help need
    а без более бы был была были было быть в вам вас весь во вот все всего вы где да
    даже для до его ее если есть еще же за здесь и из или им их к как ко когда кто
    ли либо мне меня мной мы на над надо не него нее нет ни них но ну о об однако он
    она они оно от очень по под пожалуйста помоги помогите при привет про с со так также
    такой там те тебе тем то того тоже той только том ты у уже хочу чем что чтобы эта эти
    это этот я
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Longest first; a word keeps at least three letters.
_RU_ENDINGS = (
    "иями", "ями", "ами", "его", "ого", "ему", "ому", "ыми", "ими", "ией",
    "ах", "ях", "ов", "ев", "ей", "ой", "ий", "ый", "ая", "яя", "ое", "ее", "ые", "ие",
    "ую", "юю", "ом", "ем", "ам", "ям",
    "а", "я", "ы", "и", "у", "ю", "е", "о", "ь",
)  # fmt: skip


def stem(word: str) -> str:
    """A crude stem: plural and common inflection endings (English, Russian) removed."""
    if len(word) <= 3:
        return word
    if word.isascii():
        if word.endswith("'s"):
            return word[:-2]
        if word.endswith("ies") and len(word) > 4:
            return word[:-3] + "y"
        if word.endswith(("sses", "shes", "ches", "xes", "zes")):
            return word[:-2]
        if word.endswith("s") and not word.endswith(("ss", "us", "is")):
            return word[:-1]
        return word
    for ending in _RU_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            return word[: -len(ending)]
    return word


def tokens(text: str) -> list[tuple[str, str]]:
    """(stem, word) pairs of the meaningful words of ``text``, in order."""
    pairs = []
    for word in _WORD_RE.findall(text.lower().replace("ё", "е")):
        if word in _STOPWORDS or word.isdigit():
            continue
        root = stem(word)
        if root not in _STOPWORDS:
            pairs.append((root, word))
    return pairs


@dataclass(frozen=True)
class Score:
    """An agent's score for a message, with the message words that matched."""

    agent_id: str
    score: float
    words: tuple[str, ...]

    def detail(self) -> str:
        """``score 3.0 ('python', 'code')``."""
        return f"score {self.score:.1f} ({', '.join(map(repr, self.words))})"


class LexicalScorer:
    """Picks the agent whose label and description best match a message."""

    def __init__(self, agents: Sequence[AgentInfo]) -> None:
        self._vocab = {agent.agent_id: _vocab_of(agent) for agent in agents}

    def scores(self, text: str, candidates: Sequence[AgentInfo]) -> list[Score]:
        """Every candidate's score for ``text``, in candidate order."""
        message: dict[str, str] = {}
        for root, word in tokens(text):
            message.setdefault(root, word)
        out = []
        for agent in candidates:
            label, description = self._vocab.get(agent.agent_id) or _vocab_of(agent)
            total, words = 0.0, []
            for root, word in message.items():
                gain = LABEL_WEIGHT * (root in label) + DESCRIPTION_WEIGHT * (root in description)
                if gain:
                    total += gain
                    words.append(word)
            out.append(Score(agent.agent_id, total, tuple(words)))
        return out

    def best(self, text: str, candidates: Sequence[AgentInfo]) -> Score | None:
        """The highest score above 0 (the first candidate among equals), or None."""
        winner: Score | None = None
        for score in self.scores(text, candidates):
            if score.score > 0 and (winner is None or score.score > winner.score):
                winner = score
        return winner


def _vocab_of(agent: AgentInfo) -> tuple[frozenset[str], frozenset[str]]:
    """The stems of an agent's label (and id), and of its description."""
    label = frozenset(root for root, _ in tokens(f"{agent.label} {agent.agent_id}"))
    return label, frozenset(root for root, _ in tokens(agent.description))
