"""A backend that never looks at a request's persona, history or chat id (``echo``)
has its turns read none of them: the 400-message history read of every turn was most
of Salon's own cost per message (bench/scale.py --part cost). Others still get them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from salon.agents.backend import TurnRequest
from salon.agents.echo import EchoBackend
from salon.agents.profile import AgentProfile
from salon.agents.runtime import AgentRuntime
from salon.ids import AgentId


@dataclass
class Stored:
    role: str
    content: str
    turn_id: str | None


@dataclass
class Sessions:
    """A session store that records what is asked of it."""

    asked: list[str] = field(default_factory=list)

    async def chat_id(self, session_key: str, agent_id: str) -> str:
        self.asked.append("chat_id")
        return "7"

    async def messages(self, session_key: str, agent_id: str) -> list[Stored]:
        self.asked.append("messages")
        return [Stored("user", "earlier", "$t0"), Stored("assistant", "answer", "$t0")]

    async def append_turn(
        self, session_key: str, agent_id: str, turn_id: str, messages: list[tuple[str, str, int]]
    ) -> None:
        self.asked.append("append_turn")


class Reader:
    """A backend that reads the context (no ``reads_context`` attribute)."""

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        yield f"{len(request.history)} earlier"


def runtime(tmp_path: Path, backend: object, sessions: Sessions) -> AgentRuntime:
    (tmp_path / "SOUL.md").write_text("I am careful.\n", encoding="utf-8")
    profile = AgentProfile(AgentId("a"), "A", "", tmp_path, config_persona="persona")
    return AgentRuntime(profile, backend, sessions)  # type: ignore[arg-type]


def request() -> TurnRequest:
    return TurnRequest(AgentId("a"), "@p:x", "hello", "agent:a:matrix:!r:x", chat_id="")


async def test_an_echo_turn_reads_no_session_but_is_recorded(tmp_path: Path) -> None:
    sessions = Sessions()
    echo = runtime(tmp_path, EchoBackend(), sessions)
    prepared = await echo.prepare(request())
    assert sessions.asked == []
    assert prepared.history == () and prepared.persona is None and prepared.chat_id == ""
    assert [c async for c in echo.stream(prepared)] == ["hello"]
    await echo.record(prepared, "$t1", "hello")
    assert sessions.asked == ["append_turn"]


async def test_a_backend_that_reads_context_gets_persona_history_and_chat_id(
    tmp_path: Path,
) -> None:
    sessions = Sessions()
    reader = runtime(tmp_path, Reader(), sessions)
    prepared = await reader.prepare(request())
    assert sorted(sessions.asked) == ["chat_id", "messages"]
    assert prepared.persona == "I am careful."
    assert [m.content for m in prepared.history] == ["earlier", "answer"]
    assert prepared.chat_id == "7"
