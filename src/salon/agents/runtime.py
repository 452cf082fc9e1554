"""An agent at run time: profile, backend and sessions — no Matrix here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from itertools import groupby
from typing import Protocol

import structlog

from salon.agents.attachments import describe_all
from salon.agents.backend import Backend, ChatMessage, TurnRequest
from salon.agents.context import agent_context
from salon.agents.history import estimate_tokens, trim_history
from salon.agents.profile import AgentProfile


class SessionStore(Protocol):
    """What the runtime needs of the durable store."""

    async def chat_id(self, session_key: str, agent_id: str) -> str:
        """The session's stable platform chat id."""

    async def messages(self, session_key: str, agent_id: str) -> Sequence[_Stored]:
        """The session so far, oldest first (only this agent's sessions)."""

    async def append_turn(
        self, session_key: str, agent_id: str, turn_id: str, messages: list[tuple[str, str, int]]
    ) -> None:
        """Add one turn's messages (idempotent per turn)."""


class _Stored(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def turn_id(self) -> str | None: ...


def reads_context(backend: Backend) -> bool:
    """Whether ``backend`` looks at a request's persona, history and chat id (see
    :class:`~salon.agents.backend.Backend`)."""
    return bool(getattr(backend, "reads_context", True))


class AgentRuntime:
    """Runs turns for one agent through its backend, with its persona and history."""

    def __init__(self, profile: AgentProfile, backend: Backend, sessions: SessionStore) -> None:
        self.profile = profile
        self.backend = backend
        self.sessions = sessions
        self.log = structlog.get_logger(f"salon.agent.{profile.agent_id}")

    @property
    def agent_id(self) -> str:
        """The agent's id."""
        return self.profile.agent_id

    @property
    def label(self) -> str:
        """The agent's label, for texts shown to people."""
        return self.profile.label

    async def prepare(
        self, request: TurnRequest, *, history: Sequence[ChatMessage] | None = None
    ) -> TurnRequest:
        """Add persona, trimmed history and the session's chat id to a bare request.

        ``history`` given: a stateless turn that brings its own conversation (an API
        call); no session is read, and there is no chat id."""
        if not reads_context(self.backend):
            return request  # it would not look at them: read nothing
        persona = self.profile.persona()
        if history is not None:
            turns = [[m] for m in history]
            chat_id = ""
        else:
            stored = await self.sessions.messages(request.session_key, self.agent_id)
            turns = [
                [
                    ChatMessage("assistant" if m.role == "assistant" else "user", m.content)
                    for m in g
                ]
                for _, g in groupby(stored, key=lambda m: m.turn_id)
            ]
            chat_id = await self.sessions.chat_id(request.session_key, self.agent_id)
        trimmed = trim_history(
            turns, budget=self.profile.context_tokens, persona=persona, text=request.text
        )
        return replace(request, persona=persona, history=tuple(trimmed), chat_id=chat_id)

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """The backend's chunks, with this agent as the current agent for plugins."""
        with agent_context(self.profile):
            async for chunk in self.backend.stream(request):
                if chunk:
                    yield chunk

    async def record(self, request: TurnRequest, turn_id: str, reply: str) -> None:
        """Add the message and the reply to the session (once per turn); files sent with
        it are kept as their description lines (the model sees later that they came)."""
        text = describe_all(request.text, request.attachments)
        messages = [("user", text, estimate_tokens(text))]
        if reply:
            messages.append(("assistant", reply, estimate_tokens(reply)))
        await self.sessions.append_turn(request.session_key, self.agent_id, turn_id, messages)
