"""Attachments as backends see them: the echo lines, image parts for models that take
images, notes for the rest, and the turn spec keeping them across a re-run."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from salon.agents.attachments import Attachment, chat_content
from salon.agents.backend import TurnRequest
from salon.agents.echo import EchoBackend
from salon.agents.profile import AgentProfile
from salon.agents.runtime import AgentRuntime
from salon.ids import AgentId, RoomId
from salon.turns.spec import TurnKind, TurnSpec, turn_request


def _files(tmp_path: Path) -> tuple[Attachment, Attachment]:
    (tmp_path / "dot.png").write_bytes(b"\x89PNG")
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1")
    return (
        Attachment("dot.png", "image/png", 4, tmp_path / "dot.png"),
        Attachment("a.pdf", "application/pdf", 6, tmp_path / "a.pdf"),
    )


def _request(text: str, attachments: tuple[Attachment, ...]) -> TurnRequest:
    return TurnRequest(AgentId("echo"), "@a:x", text, "s", "", attachments=attachments)


async def test_echo_describes_each_attachment_on_its_own_line(tmp_path: Path) -> None:
    image, pdf = _files(tmp_path)
    echo = EchoBackend(prefix="> ")
    only = [c async for c in echo.stream(_request("", (image, pdf)))]
    assert only == [
        "[attachment: dot.png image/png 4 bytes]\n[attachment: a.pdf application/pdf 6 bytes]"
    ]
    captioned = [c async for c in echo.stream(_request("see?", (pdf,)))]
    assert captioned == ["> see?\n[attachment: a.pdf application/pdf 6 bytes]"]
    assert [c async for c in echo.stream(_request("hi", ()))] == ["> hi"]


def test_a_model_that_takes_images_gets_image_parts(tmp_path: Path) -> None:
    image, pdf = _files(tmp_path)
    parts = chat_content("what is it?", (image, pdf), images=True)
    data = base64.b64encode(b"\x89PNG").decode()
    assert parts == [
        {"type": "text", "text": "what is it?\n[attachment: a.pdf application/pdf 6 bytes]"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
    ]


def test_a_model_without_images_gets_a_note_for_each_file(tmp_path: Path) -> None:
    image, pdf = _files(tmp_path)
    assert chat_content("what is it?", (image, pdf), images=False) == (
        "what is it?\n[attachment: dot.png image/png 4 bytes]"
        "\n[attachment: a.pdf application/pdf 6 bytes]"
    )


def test_the_ledgered_spec_keeps_the_attachments(tmp_path: Path) -> None:
    image, pdf = _files(tmp_path)
    spec = TurnSpec(
        "$e", AgentId("echo"), TurnKind.MESSAGE, RoomId("!r:x"), "@a:x", "", "s",
        attachments=(image, pdf),
    )  # fmt: skip
    again = TurnSpec.from_json(spec.to_json())
    assert again.attachments == (image, pdf)
    assert turn_request(again).attachments == (image, pdf)
    # Turns ledgered before attachments existed read back with none.
    old = spec.to_json().replace(',"attachments":[', ',"x":[')
    assert TurnSpec.from_json(old).attachments == ()


class _Sessions:
    def __init__(self) -> None:
        self.appended: list[list[tuple[str, str, int]]] = []

    async def chat_id(self, session_key: str, agent_id: str) -> str:
        return "1"

    async def messages(self, session_key: str, agent_id: str) -> list[Any]:
        return []

    async def append_turn(
        self, session_key: str, agent_id: str, turn_id: str, messages: list[tuple[str, str, int]]
    ) -> None:
        self.appended.append(messages)


async def test_the_session_remembers_which_files_came(tmp_path: Path) -> None:
    _, pdf = _files(tmp_path)
    sessions = _Sessions()
    profile = AgentProfile(AgentId("echo"), "Echo", "", tmp_path)
    runtime = AgentRuntime(profile, EchoBackend(), sessions)
    await runtime.record(_request("read this", (pdf,)), "$t", "done")
    ((user, assistant),) = sessions.appended
    assert user[:2] == ("user", "read this\n[attachment: a.pdf application/pdf 6 bytes]")
    assert assistant[:2] == ("assistant", "done")
