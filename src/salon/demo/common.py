"""What the demo agents share: the "not for me" marker and message clean-up."""

from __future__ import annotations

import re

# A reply starting with this says "nothing here for me" (followed by a short hint).
# A team lead can then leave it out of the team's answer.
NOTHING_FOR_ME = "🤷"

_LEADING_MENTIONS = re.compile(r"^(?:\s*@[^\s,:]+(?::[^\s,]+)?[,:]?)+\s*")


def strip_mentions(text: str) -> str:
    """``text`` without the mentions it starts with (``@Clock, what time…`` → ``what time…``)."""
    return _LEADING_MENTIONS.sub("", text, count=1).strip()


def nothing_for_me(hint: str) -> str:
    """The reply of an agent that has nothing to say to a message."""
    return f"{NOTHING_FOR_ME} {hint}"


def is_nothing_for_me(reply: str) -> bool:
    """Whether ``reply`` says "not for me" (see :data:`NOTHING_FOR_ME`)."""
    return reply.lstrip().startswith(NOTHING_FOR_ME)
