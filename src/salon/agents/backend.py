"""The backend interface: a turn request in, text chunks out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from salon.ids import AgentId


@dataclass(frozen=True)
class TurnRequest:
    """Everything a backend needs to answer one message."""

    agent_id: AgentId
    sender: str
    text: str
    session_key: str
    chat_id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """Produces the reply to a turn as a stream of text chunks."""

    def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """Yield the reply in order; raise BackendError on failure."""
        ...
