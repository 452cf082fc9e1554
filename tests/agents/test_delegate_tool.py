"""The ``delegate`` tool of the ``openai`` backend, real client against the fake server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from tests.agents.fakes import FakeOpenAI

from salon._exceptions import BackendError
from salon.agents.backend import TurnRequest
from salon.agents.context import current_delegator, delegator_context
from salon.agents.openai_backend import OpenAIChatBackend
from salon.agents.tools import (
    DELEGATE_TOOL_NAME,
    DelegationOutcome,
    Delegator,
    call_delegate_tool,
    delegate_tool_schema,
)
from salon.ids import AgentId

REQUEST = TurnRequest(
    agent_id=AgentId("lead"),
    sender="@alice:localhost",
    text="what is six times seven?",
    session_key="agent:lead:matrix:!room",
    chat_id="1",
    persona="You lead.",
)
TARGETS = [("coder", "Writes and reviews code."), ("math", "Does arithmetic.")]


class StubDelegator:
    """Records delegations; answers each with ``outcome`` after ``delay_s``."""

    def __init__(
        self,
        outcome: DelegationOutcome = DelegationOutcome(True, "42"),
        *,
        targets: Sequence[tuple[str, str]] = TARGETS,
        delay_s: float = 0.0,
    ) -> None:
        self.outcome = outcome
        self._targets = list(targets)
        self.delay_s = delay_s
        self.calls: list[tuple[str, str, str | None]] = []
        self.active = self.most_active = 0  # delegations under way at once

    def targets(self) -> Sequence[tuple[str, str]]:
        return self._targets

    async def delegate(
        self, agent: str, task: str, context: str | None = None
    ) -> DelegationOutcome:
        self.calls.append((agent, task, context))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.active -= 1
        return self.outcome


async def collect(backend: OpenAIChatBackend, delegator: Delegator | None) -> list[str]:
    with delegator_context(delegator):
        return [chunk async for chunk in backend.stream(REQUEST)]


def call(agent: str = "math", task: str = "6*7", **extra: Any) -> dict[str, Any]:
    return {"name": "delegate", "arguments": {"agent": agent, "task": task, **extra}}


async def test_tool_call_reaches_delegator_and_result_goes_back(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call("math", "compute 6*7", context="the user asked")]]
    delegator = StubDelegator()
    chunks = await collect(make_backend(url), delegator)
    assert "".join(chunks) == "Result: 42"
    assert delegator.calls == [("math", "compute 6*7", "the user asked")]

    first, second = (r.body for r in server.requests)
    assert first["tool_choice"] == "auto"
    [tool] = first["tools"]
    assert tool == delegate_tool_schema(TARGETS)
    assert tool["function"]["name"] == DELEGATE_TOOL_NAME
    assert tool["function"]["parameters"]["properties"]["agent"]["enum"] == ["coder", "math"]
    assert "coder: Writes and reviews code." in tool["function"]["description"]
    assert "math: Does arithmetic." in tool["function"]["description"]
    assert tool["function"]["parameters"]["required"] == ["agent", "task"]

    assert second["tools"] == first["tools"]
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assistant, result = second["messages"][len(first["messages"]) :]
    arguments = json.dumps({"agent": "math", "task": "compute 6*7", "context": "the user asked"})
    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1_0",
                "type": "function",
                "function": {"name": "delegate", "arguments": arguments},
            }
        ],
    }
    assert result == {"role": "tool", "tool_call_id": "call_1_0", "content": "42"}


async def test_calls_of_one_round_run_concurrently(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call("math", "6*7"), call("coder", "review it")]]
    delegator = StubDelegator(delay_s=0.3)
    chunks = await collect(make_backend(url), delegator)
    # Both under way at once (counted, not timed: a loaded machine is slow either way).
    assert delegator.most_active == 2
    assert "".join(chunks) == "Result: 42 | 42"
    assert sorted(delegator.calls) == [("coder", "review it", None), ("math", "6*7", None)]
    second = server.requests[1].body["messages"]
    assert [m["tool_call_id"] for m in second[-2:]] == ["call_1_0", "call_1_1"]
    assert [c["id"] for c in second[-3]["tool_calls"]] == ["call_1_0", "call_1_1"]


async def test_calls_beyond_the_per_round_cap_get_an_error_result(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call("math", "1"), call("coder", "2"), call("math", "3")]]
    delegator = StubDelegator()
    chunks = await collect(make_backend(url, max_tool_calls_per_round=2), delegator)
    assert delegator.calls == [("math", "1", None), ("coder", "2", None)]
    second = server.requests[1].body["messages"]
    # Every call of the round is in the assistant message and has its tool message.
    assert [c["id"] for c in second[-4]["tool_calls"]] == ["call_1_0", "call_1_1", "call_1_2"]
    results = second[-3:]
    assert [r["tool_call_id"] for r in results] == ["call_1_0", "call_1_1", "call_1_2"]
    assert [r["content"] for r in results[:2]] == ["42", "42"]
    assert results[2]["content"].startswith("[ERROR] too many tool calls in one round")
    assert "max_tool_calls_per_round is 2" in results[2]["content"]
    assert "".join(chunks).startswith("Result: 42 | 42 | [ERROR] too many tool calls")


async def test_default_per_round_cap_is_eight(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call("math", str(i)) for i in range(9)]]
    delegator = StubDelegator()
    await collect(make_backend(url), delegator)
    assert [c[1] for c in delegator.calls] == [str(i) for i in range(8)]
    assert server.requests[1].body["messages"][-1]["content"].startswith("[ERROR] too many")


@pytest.mark.parametrize(
    ("tool_call", "expected"),
    [
        ({"name": "delegate", "arguments": '{"agent": "math", "task": '}, "not valid JSON"),
        ({"name": "delegate", "arguments": "[1, 2]"}, "must be a JSON object"),
        (call("nobody"), "unknown agent 'nobody'; you can delegate to: coder, math"),
        (call(task="  "), "missing 'task'"),
        ({"name": "delegate", "arguments": {"task": "x"}}, "missing 'agent'"),
        ({"name": "rm_rf", "arguments": "{}"}, "unknown tool 'rm_rf'"),
    ],
)
async def test_bad_calls_give_the_model_an_error_result(
    fake: tuple[FakeOpenAI, str], make_backend: Any, tool_call: dict[str, Any], expected: str
) -> None:
    server, url = fake
    server.tool_rounds = [[tool_call]]
    delegator = StubDelegator()
    chunks = await collect(make_backend(url), delegator)
    assert delegator.calls == []
    result = server.requests[1].body["messages"][-1]
    assert result["role"] == "tool"
    assert result["content"].startswith("[ERROR] ")
    assert expected in result["content"]
    assert "".join(chunks) == f"Result: {result['content']}"


async def test_without_delegator_no_tools_are_sent(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    assert "".join(await collect(make_backend(url), None)) == "Hello, world"
    [received] = server.requests
    assert "tools" not in received.body
    assert "tool_choice" not in received.body


async def test_delegator_without_targets_sends_no_tools(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    assert "".join(await collect(make_backend(url), StubDelegator(targets=[]))) == "Hello, world"
    assert "tools" not in server.requests[0].body


async def test_too_many_tool_rounds_fail_clearly(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call()] for _ in range(5)]
    delegator = StubDelegator()
    with pytest.raises(BackendError, match=r"still called tools after 2 rounds.*max_tool_rounds"):
        await collect(make_backend(url, max_tool_rounds=2), delegator)
    assert len(delegator.calls) == 2
    assert len(server.requests) == 3


async def test_several_rounds_within_the_limit(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call("math", "6*7")], [call("coder", "check 42")]]
    delegator = StubDelegator()
    assert "".join(await collect(make_backend(url, max_tool_rounds=2), delegator)) == "Result: 42"
    assert [c[0] for c in delegator.calls] == ["math", "coder"]
    last = server.requests[2].body["messages"]
    assert [m["role"] for m in last[-4:]] == ["assistant", "tool", "assistant", "tool"]


async def test_offline_outcome_reaches_the_model(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call("coder", "fix the bug")]]
    delegator = StubDelegator(DelegationOutcome(False, "[OFFLINE] coder"))
    assert "".join(await collect(make_backend(url), delegator)) == "Result: [OFFLINE] coder"
    assert server.requests[1].body["messages"][-1]["content"] == "[OFFLINE] coder"


async def test_text_before_tool_calls_is_shown_and_kept(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call()]]
    server.tool_text = ["Let me ", "ask math."]
    chunks = await collect(make_backend(url), StubDelegator())
    assert "".join(chunks) == "Let me ask math.\n\nResult: 42"
    assistant = server.requests[1].body["messages"][-2]
    assert assistant["content"] == "Let me ask math."


async def test_servers_without_index_or_ids_or_tool_calls_finish(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_call_index = False
    server.tool_finish_reason = "stop"  # some local servers say "stop" even after tool calls
    server.tool_rounds = [[{**call("math"), "id": "a"}, {**call("coder"), "id": "b"}]]
    delegator = StubDelegator()
    assert "".join(await collect(make_backend(url), delegator)) == "Result: 42 | 42"
    assert sorted(c[0] for c in delegator.calls) == ["coder", "math"]
    server.tool_call_index = True
    server.tool_rounds = [[{**call("math"), "id": None}]]
    await collect(make_backend(url), delegator)
    assert server.requests[-1].body["messages"][-1]["tool_call_id"] == "call_1_0"


async def test_retry_before_first_chunk_does_not_repeat_delegations(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call()]]
    server.fail_with = [503]  # the first request fails, is retried, then calls the tool
    delegator = StubDelegator()
    assert "".join(await collect(make_backend(url), delegator)) == "Result: 42"
    assert len(delegator.calls) == 1
    assert len(server.requests) == 3


async def test_failure_after_text_was_shown_raises(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    server, url = fake
    server.tool_rounds = [[call()]]
    server.drop_after = 1  # the answer after the tool round breaks off after "Result: "
    got: list[str] = []
    with pytest.raises(BackendError, match="broke off"), delegator_context(StubDelegator()):
        async for chunk in make_backend(url, max_retries=3).stream(REQUEST):
            got.append(chunk)
    assert got == ["Result: "]
    assert len(server.requests) == 2


async def test_delegator_exception_becomes_error_result() -> None:
    class Broken(StubDelegator):
        async def delegate(
            self, agent: str, task: str, context: str | None = None
        ) -> DelegationOutcome:
            raise RuntimeError("room gone")

    outcome = await call_delegate_tool(Broken(), "delegate", '{"agent": "math", "task": "x"}')
    assert outcome == DelegationOutcome(
        False, "[ERROR] delegation to math failed: RuntimeError: room gone"
    )


async def test_delegator_context_is_scoped() -> None:
    delegator = StubDelegator()
    assert current_delegator() is None
    with delegator_context(delegator):
        assert current_delegator() is delegator
        with delegator_context(None):
            assert current_delegator() is None
        assert current_delegator() is delegator
    assert current_delegator() is None


async def test_a_refused_call_tells_the_model_why_and_never_delegates(
    fake: tuple[FakeOpenAI, str], make_backend: Any
) -> None:
    from salon.agents.approval import ApprovingDelegator, Denied, ToolCall, approver_context

    class Refuses:
        def __init__(self) -> None:
            self.asked: list[ToolCall] = []

        async def approve(self, call: ToolCall) -> Denied:
            self.asked.append(call)
            return Denied("denied by @alice:localhost")

    server, url = fake
    server.tool_rounds = [[call("math", "compute 6*7")]]
    inner, approver = StubDelegator(), Refuses()
    with approver_context(approver):
        await collect(make_backend(url), ApprovingDelegator(inner))
    assert inner.calls == []
    assert approver.asked == [ToolCall("delegate", {"agent": "math", "task": "compute 6*7"})]
    result = server.requests[1].body["messages"][-1]
    assert result["role"] == "tool"
    assert result["content"] == "[DENIED] delegate was not run: denied by @alice:localhost"
