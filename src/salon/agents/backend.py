"""The backend interface: a turn request in, text chunks out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from salon.agents.attachments import Attachment
from salon.ids import AgentId

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation as a model sees it."""

    role: Role
    content: str


@dataclass(frozen=True)
class TurnRequest:
    """Everything a backend needs to answer one message.

    ``history`` is the session so far (oldest first, already trimmed to the
    agent's budget), without the persona and without ``text`` itself.

    ``for_user`` is the Matrix user id of the person the turn works for, as the
    gateway knows it: the person who wrote (``sender``) for a person's message;
    for a delegated task, whose ``sender`` is the delegating agent, the person the
    delegation is for. None when the turn is for nobody in particular (an agent's
    message, a cron run, an operator's delegation). A backend that keeps anything
    per person keys it by this field, never by who the text claims to be for.

    ``attachments`` are the files sent with the message, already stored on disk;
    ``text`` is then the caption ("" when there is none).
    """

    agent_id: AgentId
    sender: str
    text: str
    session_key: str
    chat_id: str
    persona: str | None = None
    history: tuple[ChatMessage, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    for_user: str | None = None

    def messages(self) -> list[ChatMessage]:
        """Persona, history and the new message, in the order a chat model wants them."""
        head = [ChatMessage("system", self.persona)] if self.persona else []
        return [*head, *self.history, ChatMessage("user", self.text)]


class Backend(Protocol):
    """Produces the reply to a turn as a stream of text chunks.

    A backend may set a class attribute ``reads_context = False`` when it never looks
    at the request's ``persona``, ``history`` or ``chat_id``: its turns then read no
    persona file and no session from the store (the turn is still recorded in the
    session). Absent, it counts as True.
    """

    def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """Yield the reply in order; raise BackendError on failure."""
        ...
