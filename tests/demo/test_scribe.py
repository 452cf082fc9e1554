"""The demo's scribe: an offline agent writing a notebook through the demo's MCP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from salon.agents.backend import TurnRequest
from salon.agents.context import tools_context
from salon.agents.mcp_hub import McpHub
from salon.agents.python_backend import PythonPluginBackend
from salon.agents.toolbox import TurnTools
from salon.config.loader import load_config
from salon.config.models import PythonBackend
from salon.ids import AgentId

pytestmark = pytest.mark.subprocess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "salon.yaml"


async def test_the_scribe_writes_reads_and_forgets_through_the_notebook_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the notebook file is relative to the gateway's directory
    config = load_config(EXAMPLE)
    backend_config = config.agents["scribe"].backend
    assert isinstance(backend_config, PythonBackend)
    scribe = PythonPluginBackend(backend_config, agent_id="scribe")
    hub = McpHub(config)

    async def say(text: str) -> str:
        provider = await hub.tools_for("scribe")
        request = TurnRequest(AgentId("scribe"), "@a:x", text, "k", "1")
        with tools_context(TurnTools(provider, agent_id="scribe")):
            return "".join([c async for c in scribe.stream(request)])

    try:
        assert "notebook.write_note" in await say("hello")
        assert await say("write buy milk") == "Written as note 1."
        assert await say("note call Bob") == "Written as note 2."
        assert await say("read") == "1. buy milk\n2. call Bob"
        assert await say("forget 1") == "Forgot note 1: buy milk"
        assert await say("notes") == "1. call Bob"
        assert (tmp_path / "salon-data" / "notebook.json").is_file()
    finally:
        await hub.stop()
