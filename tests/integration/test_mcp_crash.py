"""A turn re-run after kill -9 reuses its recorded tool results: the tool runs once."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import yaml

from .conftest import Person, salon_config
from .test_crash import running


async def test_a_rerun_after_kill_9_reuses_the_recorded_tool_result(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    notebook = tmp_path / "notebook.json"
    agents = {
        "writer": {
            "backend": {
                "type": "python",
                "entry": "tests.integration.mcp_plugins:write_then_crash",
                "options": {"marker": str(tmp_path / "crashed")},
            },
            "mcp": ["notebook"],
        }
    }
    config = salon_config(
        synapse,
        tmp_path,
        agents=agents,
        access={"admins": [person.user_id]},
        mcp_servers={
            "notebook": {
                "module": "salon.demo.notebook_server",
                "env": {"NOTEBOOK_FILE": str(notebook)},
            }
        },
    )
    data = config.model_dump(mode="json", exclude_none=True)
    data["agents"] = {a: v for a, v in data["agents"].items() if a in agents}
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    pattern = data["naming"]["agent_room_alias"]
    alias = f"#{pattern.replace('{id}', 'writer')}:{synapse.server_name}"

    with running(path) as first:
        first.wait_ready()
        room_id = await person.join(alias)
        asked = await person.say(room_id, "buy milk")
        assert first.proc.wait(30) == -signal.SIGKILL
    # The tool ran (the note is written) before the gateway died mid-turn.
    assert json.loads(notebook.read_text()) == ["buy milk"]
    # And the server died with the gateway (its watchdog), no orphan left.
    for _ in range(100):
        if not _servers_of(notebook):
            break
        await asyncio.sleep(0.1)
    assert _servers_of(notebook) == []

    with running(path) as second:
        second.wait_ready()
        reply = await person.wait_reply(room_id, asked, timeout=30)
    # The re-run got the recorded result; the notebook server was not asked again.
    assert reply["content"]["body"] == "Written as note 1."
    assert json.loads(notebook.read_text()) == ["buy milk"]


def _servers_of(notebook: Path) -> list[int]:
    """Live notebook server processes writing ``notebook`` (found by their environment)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if f"NOTEBOOK_FILE={notebook}".encode() in environ and state != "Z":
            found.append(int(proc.name))
    return found
