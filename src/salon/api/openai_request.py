"""The ``/v1/chat/completions`` body, validated into a :class:`ChatRequest`.

The request's ``messages`` are the conversation (roles normalised, text parts
joined); the last one, the person's, is the turn's text. A session name comes
from the ``X-Salon-Session`` header or the ``user`` field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from salon.api.bodies import invalid

SESSION_HEADER = "X-Salon-Session"
# Roles a request may use; ``developer`` (newer OpenAI clients) is a system message.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_SESSION_CHARS = 200


@dataclass(frozen=True)
class ChatRequest:
    """A validated ``/v1/chat/completions`` body."""

    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content), roles normalised
    stream: bool = False
    include_usage: bool = False
    session: str | None = None  # the durable session's name, if any
    user: str | None = None

    @property
    def text(self) -> str:
        """The turn's message: the last one."""
        return self.messages[-1][1]

    @property
    def history(self) -> tuple[tuple[str, str], ...]:
        """The conversation before it."""
        return self.messages[:-1]


def _content(value: Any, where: str) -> str:
    """A message's text: a string, or a list of ``{type: text, text}`` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise invalid(f"{where}.content[{i}]: only text parts are supported")
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{where}.content[{i}].text: must be a string")
            parts.append(text)
        return "\n".join(parts)
    raise invalid(f"{where}.content: must be a string or a list of text parts")


def _session_name(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{where}: must be a string")
    name = value.strip()
    if not name:
        return None
    if len(name) > MAX_SESSION_CHARS or not name.isprintable():
        raise invalid(f"{where}: at most {MAX_SESSION_CHARS} printable characters")
    return name


def parse_chat_request(body: Any, session_header: str | None = None) -> ChatRequest:
    """Validate a chat-completions body (ApiError ``invalid_request`` if it is not one)."""
    if not isinstance(body, Mapping):
        raise invalid("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("model: must be a non-empty string")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("messages: must be a non-empty list")
    messages = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise invalid(f"{where}: must be an object")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"{where}.role: must be one of {', '.join(ROLES)}, got {role!r}")
        messages.append((ROLES[role], _content(message.get("content"), where)))
    if messages[-1][0] != "user":
        raise invalid("messages: the last message must be the user's")
    if not messages[-1][1].strip():
        raise invalid(f"messages[{len(messages) - 1}].content: must not be empty")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream: must be true or false")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise invalid("stream_options: must be an object")
    n = body.get("n", 1)
    if n not in (1, None):
        raise invalid("n: only 1 choice is supported")
    user = _session_name(body.get("user"), "user")
    session = _session_name(session_header, SESSION_HEADER) or user
    return ChatRequest(
        model=model.strip(),
        messages=tuple(messages),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        session=session,
        user=user,
    )
