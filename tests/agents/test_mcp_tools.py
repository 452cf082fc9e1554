"""MCP tools of the ``openai`` backend: a real MCP server process (official SDK), the
real OpenAI client against a scripted OpenAI-compatible endpoint, a real store."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from tests.agents.fakes import FakeOpenAI, serve, unused_port

from salon.agents.approval import Approved, Denied, approver_context
from salon.agents.approval import ToolCall as ApprovalCall
from salon.agents.backend import TurnRequest
from salon.agents.context import current_tools, tools_context
from salon.agents.mcp_hub import McpHub
from salon.agents.openai_backend import OpenAIChatBackend
from salon.agents.python_backend import PythonPluginBackend
from salon.agents.toolbox import TurnTools
from salon.config.models import PythonBackend as PythonConfig
from salon.config.models import SalonConfig
from salon.ids import AgentId
from salon.store import Store

pytestmark = pytest.mark.subprocess

SERVER = str(Path(__file__).with_name("mcp_notes_server.py"))
REQUEST = TurnRequest(
    agent_id=AgentId("coder"),
    sender="@alice:localhost",
    text="note milk",
    session_key="agent:coder:matrix:!room",
    chat_id="1",
)


def _config(url: str, allow: list[str], **server_options: Any) -> SalonConfig:
    backend = {"type": "openai", "base_url": f"{url}/v1", "model": "test-model"}
    server = {
        "command": [sys.executable, SERVER],
        "env": {"NOTE_KEY": "given"},
        "ping_s": 0.2,
        "restart_backoff_s": 0.1,
        "call_timeout_s": 20,
        **server_options,
    }
    return SalonConfig.model_validate(
        {
            "agents": {"coder": {"backend": backend, "mcp": allow}},
            "mcp_servers": {"notes": server},
        }
    )


async def _turn(config: SalonConfig, hub: McpHub, store: Store, turn: str) -> str:
    provider = await hub.tools_for("coder")
    ledger = store.tool_calls.for_turn(turn, "coder")
    tools = TurnTools(provider, agent_id="coder", ledger=ledger)
    backend = OpenAIChatBackend(config.agents["coder"].backend, agent_id="coder")  # type: ignore[arg-type]
    try:
        with tools_context(tools):
            return "".join([c async for c in backend.stream(REQUEST)])
    finally:
        await backend.aclose()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


async def _until(done: Callable[[], bool], within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    for _ in range(int(within_s / 0.05)):
        if done() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def _offered(fake: FakeOpenAI) -> list[str]:
    return [t["function"]["name"] for t in fake.requests[0].body.get("tools", [])]


async def test_the_reply_carries_the_tool_result_and_unlisted_tools_are_never_offered(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALON_TEST_SECRET", "hunter2")
    fake = FakeOpenAI(
        tool_rounds=[[{"name": "mcp__notes__add_note", "arguments": {"text": "milk"}}]]
    )
    async with serve(fake.app()) as url:
        config = _config(url, ["notes.add_note", "notes.secret_env"])
        hub = McpHub(config)
        try:
            reply = await _turn(config, hub, store, "$t1")
            assert reply == "Result: noted #1: milk"
            assert _offered(fake) == ["mcp__notes__add_note", "mcp__notes__secret_env"]
            # The ledger holds the step; a re-run of the turn reuses it (no second note).
            steps = await store.tool_calls.of_turn("$t1", "coder")
            assert [(s["name"], s["result"]) for s in steps] == [
                ("mcp__notes__add_note", "noted #1: milk")
            ]
            fake.tool_rounds = [[{"name": "mcp__notes__add_note", "arguments": {"text": "milk"}}]]
            assert await _turn(config, hub, store, "$t1") == "Result: noted #1: milk"
            fake.tool_rounds = [[{"name": "mcp__notes__add_note", "arguments": {"text": "eggs"}}]]
            assert await _turn(config, hub, store, "$t2") == "Result: noted #2: eggs"
            # The child's env holds only what its config gives, no gateway secret.
            fake.tool_rounds = [[{"name": "mcp__notes__secret_env", "arguments": {}}]]
            assert await _turn(config, hub, store, "$t3") == "Result: <unset>|given"
            # A tool the list does not name, asked for anyway, is refused, never run.
            fake.tool_rounds = [[{"name": "mcp__notes__pid", "arguments": {}}]]
            reply = await _turn(config, hub, store, "$t4")
            assert reply.startswith("Result: [ERROR] unknown tool 'mcp__notes__pid'")
        finally:
            await hub.stop()


async def test_a_killed_server_is_restarted_and_works_again(store: Store) -> None:
    fake = FakeOpenAI(tool_rounds=[[{"name": "mcp__notes__pid", "arguments": {}}]])
    async with serve(fake.app()) as url:
        config = _config(url, ["notes"])
        hub = McpHub(config)
        try:
            first = int((await _turn(config, hub, store, "$p1")).removeprefix("Result: "))
            os.kill(first, signal.SIGKILL)
            server = hub.servers["notes"]
            await _until(lambda: server.restarts > 0)
            assert server.restarts == 1, server.status()
            await _until(lambda: server.state == "ready")
            assert server.state == "ready", server.status()
            fake.tool_rounds = [[{"name": "mcp__notes__pid", "arguments": {}}]]
            second = int((await _turn(config, hub, store, "$p2")).removeprefix("Result: "))
            assert second != first
        finally:
            await hub.stop()
        # Stopped with the hub: no child left behind.
        with pytest.raises(ProcessLookupError):
            os.kill(second, 0)


async def test_timeouts_and_size_caps_are_results_the_model_reads(store: Store) -> None:
    fake = FakeOpenAI(tool_rounds=[[{"name": "mcp__notes__slow", "arguments": {"seconds": 30}}]])
    async with serve(fake.app()) as url:
        config = _config(url, ["notes"], call_timeout_s=2, max_result_chars=100)
        hub = McpHub(config)
        try:
            began = time.monotonic()
            reply = await _turn(config, hub, store, "$s1")
            assert reply == "Result: [TIMEOUT] slow gave no result in 2 s"
            assert time.monotonic() - began < 15
            fake.tool_rounds = [[{"name": "mcp__notes__big", "arguments": {"chars": 5000}}]]
            reply = await _turn(config, hub, store, "$s2")
            assert (
                reply
                == "Result: " + "x" * 100 + "\n[cut: the result had 5000 characters, 100 shown]"
            )
        finally:
            await hub.stop()


def plugin(agent_id: str, options: Mapping[str, Any]) -> Any:
    """A ``python`` agent that keeps the message as a note through the turn's tools."""

    async def reply(request: TurnRequest) -> str:
        tools = current_tools()
        assert tools is not None
        names = [spec.name for spec in tools.specs()]
        kept = await tools.call("notes.add_note", {"text": request.text})
        refused = await tools.call("notes.pid")
        return f"{names} {kept.text} | {refused.text}"

    return reply


async def test_python_backends_call_the_same_tools_through_the_turn_context(
    store: Store,
) -> None:
    config = _config("http://127.0.0.1:9", ["notes.add_note"])
    hub = McpHub(config)
    entry = PythonConfig(type="python", entry="tests.agents.test_mcp_tools:plugin")
    backend = PythonPluginBackend(entry, agent_id="coder")
    try:
        provider = await hub.tools_for("coder")
        ledger = store.tool_calls.for_turn("$py", "coder")
        with tools_context(TurnTools(provider, agent_id="coder", ledger=ledger)):
            reply = "".join([c async for c in backend.stream(REQUEST)])
        assert reply.startswith("['mcp__notes__add_note'] noted #1: note milk | [ERROR] unknown")
        steps = await store.tool_calls.of_turn("$py", "coder")
        assert [s["name"] for s in steps] == ["mcp__notes__add_note"]
    finally:
        await hub.stop()


async def test_a_reload_applies_server_and_allow_list_changes(store: Store) -> None:
    fake = FakeOpenAI(tool_rounds=[[{"name": "mcp__notes__pid", "arguments": {}}]])
    async with serve(fake.app()) as url:
        config = _config(url, ["notes.pid"])
        hub = McpHub(config)
        try:
            first = int((await _turn(config, hub, store, "$r1")).removeprefix("Result: "))
            assert _offered(fake) == ["mcp__notes__pid"]
            # The allow-list widens, and the server's config changes: it is restarted.
            changed = _config(url, ["notes"], ping_s=0.5)
            await hub.apply(changed)
            with pytest.raises(ProcessLookupError):
                os.kill(first, 0)
            fake.requests.clear()
            fake.tool_rounds = [[{"name": "mcp__notes__pid", "arguments": {}}]]
            second = int((await _turn(changed, hub, store, "$r2")).removeprefix("Result: "))
            assert second != first
            assert "mcp__notes__add_note" in _offered(fake)
            # The server goes away: its tools with it.
            gone = SalonConfig.model_validate(
                {"agents": {"coder": {"backend": changed.agents["coder"].backend}}}
            )
            await hub.apply(gone)
            assert hub.servers == {} and await hub.tools_for("coder") is None
            with pytest.raises(ProcessLookupError):
                os.kill(second, 0)
        finally:
            await hub.stop()


async def test_while_a_crashed_server_backs_off_its_tools_say_unavailable(store: Store) -> None:
    fake = FakeOpenAI(tool_rounds=[[{"name": "mcp__notes__pid", "arguments": {}}]])
    async with serve(fake.app()) as url:
        config = _config(url, ["notes"], restart_backoff_s=60)
        hub = McpHub(config)
        try:
            pid = int((await _turn(config, hub, store, "$u1")).removeprefix("Result: "))
            server = hub.servers["notes"]
            os.kill(pid, signal.SIGKILL)
            await _until(lambda: server.state == "restarting")
            assert server.state == "restarting", server.status()
            before = _samples("unavailable")
            fake.tool_rounds = [[{"name": "mcp__notes__pid", "arguments": {}}]]
            reply = await _turn(config, hub, store, "$u2")
            assert reply.startswith("Result: [UNAVAILABLE] MCP server 'notes' is restarting")
            # Its tools are still offered (as last listed); calls say why they fail.
            assert len(_offered(fake)) == len(server.tools) and "mcp__notes__pid" in _offered(fake)
            assert _samples("unavailable") == before + 1
            # An unavailable result is not recorded: the re-run calls again.
            assert await store.tool_calls.of_turn("$u2", "coder") == []
        finally:
            await hub.stop()


def _samples(outcome: str) -> float:
    labels = {"server": "notes", "tool": "pid", "outcome": outcome}
    return REGISTRY.get_sample_value("salon_tool_calls_total", labels) or 0.0


async def test_a_remote_server_over_streamable_http_gets_its_headers(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTES_TOKEN", "s3cret")
    monkeypatch.setenv("TEAM_NAME", "blue")
    port = unused_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, SERVER, "--http", str(port), stderr=asyncio.subprocess.DEVNULL
    )
    fake = FakeOpenAI(tool_rounds=[[{"name": "mcp__web__auth", "arguments": {}}]])
    try:
        async with serve(fake.app()) as url:
            backend = {"type": "openai", "base_url": f"{url}/v1", "model": "test-model"}
            server = {
                "url": f"http://127.0.0.1:{port}/mcp",
                "token_env": "NOTES_TOKEN",
                "headers_env": {"X-Team": "TEAM_NAME"},
            }
            config = SalonConfig.model_validate(
                {
                    "agents": {"coder": {"backend": backend, "mcp": ["web.auth"]}},
                    "mcp_servers": {"web": server},
                }
            )
            hub = McpHub(config)
            try:
                await _until(lambda: _listening(port))
                assert await _turn(config, hub, store, "$h1") == "Result: Bearer s3cret|blue"
                assert _offered(fake) == ["mcp__web__auth"]
            finally:
                await hub.stop()
    finally:
        child.kill()
        await child.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Approver:
    """Denies ``notes.add_note``, approves the rest; remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def approve(self, call: ApprovalCall) -> Approved | Denied:
        self.asked.append(call.tool)
        return Denied("denied by @alice") if call.tool == "notes.add_note" else Approved()


async def test_every_mcp_call_asks_the_turns_approver_first(store: Store) -> None:
    note = {"name": "mcp__notes__add_note", "arguments": {"text": "milk"}}
    fake = FakeOpenAI(tool_rounds=[[note, {"name": "mcp__notes__pid", "arguments": {}}]])
    async with serve(fake.app()) as url:
        config = _config(url, ["notes"])
        hub = McpHub(config)
        approver = _Approver()
        try:
            with approver_context(approver):
                reply = await _turn(config, hub, store, "$a1")
            denied, pid = reply.removeprefix("Result: ").split(" | ")
            assert denied == "[DENIED] notes.add_note was not run: denied by @alice"
            assert pid.isdigit()
            assert approver.asked == ["notes.add_note", "notes.pid"]
            # The denied call never ran and is no step; the approved one is.
            steps = await store.tool_calls.of_turn("$a1", "coder")
            assert [s["name"] for s in steps] == ["mcp__notes__pid"]
            fake.tool_rounds = [[note]]
            assert await _turn(config, hub, store, "$a2") == "Result: noted #1: milk"
        finally:
            await hub.stop()
