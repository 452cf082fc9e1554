"""Every user-facing text, in one catalogue (English, Russian).

Call :func:`text` with a key and keyword arguments; a missing translation
falls back to English, a missing key is a programming error caught by tests.
"""

from __future__ import annotations

from typing import Any

DEFAULT_LOCALE = "en"

CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        "backend_error": "⚠️ {agent} could not answer: {error}",
        "turn_gave_up": "⚠️ {agent} gave up on this message after {attempts} attempts.",
        "space_topic": "Salon: AI agents on Matrix. Each agent has its own room here.",
        "lobby_name": "Lobby",
        "lobby_topic": "Talk to everyone here; each agent also has its own room in this space.",
        "agent_room_topic": "{label}: {description}",
        "reply_stopped": "⏹ (stopped)",
        "empty_reply": "(no answer)",
    },
    "ru": {
        "backend_error": "⚠️ {agent} не смог ответить: {error}",
        "turn_gave_up": "⚠️ {agent} прекратил попытки ответить после {attempts} попыток.",
        "space_topic": "Salon: ИИ-агенты в Matrix. У каждого агента здесь своя комната.",
        "lobby_name": "Лобби",
        "lobby_topic": "Общая комната; у каждого агента есть и своя комната в этом пространстве.",
        "agent_room_topic": "{label}: {description}",
        "reply_stopped": "⏹ (остановлено)",
        "empty_reply": "(нет ответа)",
    },
}


def text(key: str, locale: str = DEFAULT_LOCALE, **values: Any) -> str:
    """The text for ``key`` in ``locale`` with ``values`` filled in."""
    template = CATALOGUE.get(locale, {}).get(key) or CATALOGUE[DEFAULT_LOCALE][key]
    return template.format(**values)
