"""MCP tools through Matrix: a real MCP server process (official SDK), an `openai`
agent whose scripted OpenAI-compatible endpoint asks for the tool, the real Synapse."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from salon.app.gateway import Gateway
from salon.store.kv import GATEWAY_STATUS_KEY

from ..agents.fakes import FakeOpenAI, serve
from .conftest import Person, salon_config
from .test_agent_runtime import _final_text
from .test_approvals import wait_request

SERVER = str(Path(__file__).parent.parent / "agents" / "mcp_notes_server.py")
pytestmark = pytest.mark.subprocess


def _calls(outcome: str) -> float:
    labels = {"server": "notes", "tool": "add_note", "outcome": outcome}
    return REGISTRY.get_sample_value("salon_tool_calls_total", labels) or 0.0


async def _until(done: Callable[[], bool], within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    for _ in range(int(within_s / 0.05)):
        if done() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def test_the_agent_uses_an_mcp_tool_and_a_killed_server_comes_back(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Any],
    person: Person,
) -> None:
    note = {"name": "mcp__notes__add_note", "arguments": {"text": "milk"}}
    server = FakeOpenAI(tool_rounds=[[note]])
    async with serve(server.app()) as url:
        config = salon_config(
            synapse,
            tmp_path,
            agents={
                "keeper": {
                    "backend": {"type": "openai", "base_url": f"{url}/v1", "model": "test-model"},
                    "mcp": ["notes.add_note"],
                }
            },
            mcp_servers={
                "notes": {
                    "command": [sys.executable, SERVER],
                    "start": "startup",
                    "ping_s": 0.3,
                    "restart_backoff_s": 0.2,
                }
            },
        )
        gateway: Gateway = await gateways(config, invite=[person.user_id])
        room_id = await person.join(
            f"#{config.agent_room_alias_localpart('keeper')}:{synapse.server_name}"
        )
        before = _calls("ok")
        asked = await person.say(room_id, "Note: milk")
        assert await _final_text(person, room_id, asked, timeout=30) == "Result: noted #1: milk"
        # Only the listed tool was offered (next to delegate): not `pid`, not `secret_env`.
        offered = [t["function"]["name"] for t in server.requests[0].body["tools"]]
        assert offered == ["delegate", "mcp__notes__add_note"]
        assert _calls("ok") == before + 1
        running = gateway.running
        assert running is not None and running.mcp is not None
        turns = await running.store.db.fetchall("SELECT event_id, name, result FROM tool_calls")
        assert [(r["event_id"], r["name"], r["result"]) for r in turns] == [
            (asked, "mcp__notes__add_note", "noted #1: milk")
        ]

        # Kill the server's process: restarted with backoff, then it works again.
        hub = running.mcp.servers["notes"]
        pid = int(await _pid(hub))
        os.kill(pid, signal.SIGKILL)
        await _until(lambda: hub.restarts > 0 and hub.state == "ready")
        assert (hub.restarts, hub.state) == (1, "ready"), hub.status()
        server.tool_rounds = [[{"name": "mcp__notes__add_note", "arguments": {"text": "eggs"}}]]
        again = await person.say(room_id, "Note: eggs")
        # A fresh process: its notes start again at #1.
        assert await _final_text(person, room_id, again, timeout=30) == "Result: noted #1: eggs"
        # `salon status` (the status the gateway keeps in the store) shows the restart.
        loop = await _status_loop(running.store, "mcp:notes", lambda lp: lp["restarts"] == 1)
        assert (loop["running"], loop["restarts"]) == (True, 1), loop


async def _status_loop(store: Any, name: str, done: Callable[[Any], bool]) -> Any:
    found = None
    for _ in range(100):  # the gateway publishes its status every 5 s
        raw = await store.kv.get(GATEWAY_STATUS_KEY)
        loops = {lp["name"]: lp for lp in json.loads(raw)["loops"]} if raw else {}
        found = loops.get(name)
        if found is not None and done(found):
            break
        await asyncio.sleep(0.2)
    return found


async def _pid(server: Any) -> str:
    result = await server.call("pid", {})
    assert result.ok, result
    return str(result.text)


async def test_an_mcp_call_the_agent_must_ask_for_runs_once_the_person_approves(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Any],
    person: Person,
) -> None:
    note = {"name": "mcp__notes__add_note", "arguments": {"text": "milk"}}
    server = FakeOpenAI(tool_rounds=[[note]])
    async with serve(server.app()) as url:
        config = salon_config(
            synapse,
            tmp_path,
            agents={
                "keeper": {
                    "backend": {"type": "openai", "base_url": f"{url}/v1", "model": "test-model"},
                    "mcp": ["notes"],
                    "approve": ["notes.add_note"],
                }
            },
            mcp_servers={"notes": {"command": [sys.executable, SERVER]}},
        )
        gateway: Gateway = await gateways(config, invite=[person.user_id])
        store = gateway.store
        assert store is not None
        room_id = await person.join(
            f"#{config.agent_room_alias_localpart('keeper')}:{synapse.server_name}"
        )
        asked = await person.say(room_id, "Note: milk")
        record = await wait_request(store)
        assert record.tool == "notes.add_note" and record.arguments == {"text": "milk"}
        # Nothing ran yet: no step in the ledger.
        assert await store.db.fetchall("SELECT * FROM tool_calls") == []
        await person.react(room_id, record.request_event_id or "", "✅")
        assert await _final_text(person, room_id, asked, timeout=30) == "Result: noted #1: milk"
