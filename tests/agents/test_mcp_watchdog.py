"""An MCP server child dies with the gateway, even when the gateway is killed -9 and the
server ignores its stdin closing (the watchdog's PR_SET_PDEATHSIG does it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

SERVER = str(Path(__file__).with_name("mcp_notes_server.py"))

# A stand-in gateway: a hub with one server; prints the server's pid, then waits.
HOST = textwrap.dedent(
    f"""
    import asyncio, sys
    from salon.agents.mcp_hub import McpHub
    from salon.config.models import SalonConfig

    async def main():
        config = SalonConfig.model_validate({{
            "agents": {{"a": {{"backend": "echo", "mcp": ["notes"]}}}},
            "mcp_servers": {{"notes": {{
                "command": [sys.executable, {SERVER!r}],
                "env": {{"NOTES_OUTLIVE_STDIN": "1"}},
            }}}},
        }})
        hub = McpHub(config)
        result = await hub.servers["notes"].call("pid", {{}})
        print("PID", result.text, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent, pid 1 or the reaper, collects it).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_the_server_dies_when_the_gateway_is_killed_9() -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child = 0
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        while line and not line.startswith("PID "):
            line = host.stdout.readline()
        child = int(line.split()[1])
        assert _alive(child)
        os.kill(host.pid, signal.SIGKILL)
        host.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if host.poll() is None:
            host.kill()
        if child and _alive(child):  # the check failed: leave nothing behind
            os.kill(child, signal.SIGKILL)
