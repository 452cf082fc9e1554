"""Token estimates and trimming a history to a budget.

Tokens are *estimated*, not counted: no tokenizer download is possible or
wanted. The estimate is ``ceil(chars / 4) + 4`` per message (about right for
English with GPT-style BPE; generous for code), and is used only to decide how
much history to send.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from salon.agents.backend import ChatMessage

PER_MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """An estimate of the tokens ``text`` costs as one chat message."""
    return math.ceil(len(text) / 4) + PER_MESSAGE_OVERHEAD


def trim_history(
    turns: Sequence[Sequence[ChatMessage]],
    *,
    budget: int,
    persona: str | None,
    text: str,
) -> list[ChatMessage]:
    """The newest whole turns that fit ``budget`` next to the persona and the new message.

    Oldest turns go first; a turn (its user message and reply) is kept or dropped
    whole; the persona and the new message always stay, even over budget.
    """
    left = budget - estimate_tokens(text) - (estimate_tokens(persona) if persona else 0)
    kept: list[Sequence[ChatMessage]] = []
    for turn in reversed(turns):
        cost = sum(estimate_tokens(m.content) for m in turn)
        if cost > left:
            break
        kept.append(turn)
        left -= cost
    return [m for turn in reversed(kept) for m in turn]
