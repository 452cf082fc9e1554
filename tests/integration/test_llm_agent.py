"""An `openai` agent through Matrix: a local OpenAI-compatible server, streaming, memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from salon.app.gateway import Gateway

from ..agents.fakes import FakeOpenAI, serve
from .conftest import Person, salon_config
from .test_agent_runtime import _final_text


@pytest.fixture
async def llm() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    server = FakeOpenAI(chunks=["The ", "answer ", "is ", "42."], chunk_delay_s=0.2)
    async with serve(server.app()) as url:
        yield server, f"{url}/v1"


async def test_openai_agent_streams_and_remembers_the_conversation(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
    llm: tuple[FakeOpenAI, str],
) -> None:
    server, base_url = llm
    config = salon_config(
        synapse,
        tmp_path,
        agents={
            "sage": {
                "persona": "You are Sage.",
                "backend": {"type": "openai", "base_url": base_url, "model": "test-model"},
            }
        },
        replies={"edit_interval_s": 0.2},
    )
    await gateways(config, invite=[person.user_id])
    room_id = await person.join(
        f"#{config.agent_room_alias_localpart('sage')}:{synapse.server_name}"
    )

    first = await person.say(room_id, "What is the answer?")
    assert await _final_text(person, room_id, first) == "The answer is 42."
    second = await person.say(room_id, "Are you sure?")
    assert await _final_text(person, room_id, second) == "The answer is 42."

    sent = server.requests[-1].body
    assert sent["model"] == "test-model" and sent["stream"] is True
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("system", "You are Sage."),
        ("user", "What is the answer?"),
        ("assistant", "The answer is 42."),
        ("user", "Are you sure?"),
    ]


async def test_openai_agent_delegates_with_the_tool_and_finishes_with_the_result(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
) -> None:
    server = FakeOpenAI(
        tool_rounds=[
            [{"name": "delegate", "arguments": {"agent": "helper", "task": "add 2 and 2"}}]
        ]
    )
    async with serve(server.app()) as url:
        config = salon_config(
            synapse,
            tmp_path,
            agents={
                "boss": {
                    "backend": {"type": "openai", "base_url": f"{url}/v1", "model": "test-model"},
                    "can_delegate_to": ["helper"],
                },
                "helper": {"backend": {"type": "echo", "prefix": "helper: "}},
            },
        )
        await gateways(config, invite=[person.user_id])
        alias = f"#{config.agent_room_alias_localpart('boss')}:{synapse.server_name}"
        room_id = await person.join(alias)
        asked = await person.say(room_id, "What is 2 + 2? Ask the helper.")
        text = await _final_text(person, room_id, asked, timeout=30)
    # The model's second request carried the delegation result as the tool result.
    assert text == "Result: helper: add 2 and 2"
    tools = server.requests[0].body["tools"]
    assert tools[0]["function"]["parameters"]["properties"]["agent"]["enum"] == ["helper"]
