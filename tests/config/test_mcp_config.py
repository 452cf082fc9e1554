"""`mcp_servers:` and `mcp:`: clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from salon._exceptions import ConfigError
from salon.config.loader import load_config
from salon.config.mcp import mcp_allow_list
from salon.config.models import SalonConfig

BASE = """
agents:
  a:
    backend: echo
    mcp: {mcp}
{own}
mcp_servers:
  notes:
{server}
"""
STDIO = "    command: [python, notes.py]"


def _load(tmp_path: Path, mcp: str = "[notes]", server: str = STDIO, own: str = "") -> SalonConfig:
    path = tmp_path / "salon.yaml"
    path.write_text(BASE.format(mcp=mcp, server=server, own=own), encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    ("server", "mcp", "own", "where", "says"),
    [
        (
            STDIO + "\n    url: https://x.example/mcp",
            "[notes]",
            "",
            "mcp_servers.notes",
            "either command",
        ),
        ("    env: {A: b}", "[notes]", "", "mcp_servers.notes", "either command"),
        (STDIO + "\n    module: a.b", "[notes]", "", "mcp_servers.notes", "either command"),
        (STDIO + "\n    args: [x]", "[notes]", "", "mcp_servers.notes", "args: goes with"),
        (STDIO + "\n    token_env: T", "[notes]", "", "mcp_servers.notes", "for url: servers"),
        (
            "    url: https://x.example/mcp\n    cwd: /tmp",
            "[notes]",
            "",
            "mcp_servers.notes",
            "for command: servers",
        ),
        (STDIO, "[notes, other.tool]", "", "agents.a.mcp.1", "unknown MCP server 'other'"),
        (STDIO, "[notes.]", "", "agents.a.mcp.0", "use 'server' or 'server.tool'"),
        (
            STDIO,
            "[notes]",
            "    mcp_servers:\n      notes:\n        command: [x]",
            "agents.a.mcp_servers.notes",
            "also a shared server",
        ),
        (STDIO + "\n    start: soon", "[notes]", "", "mcp_servers.notes.start", "lazy"),
    ],
)
def test_errors_name_the_key(
    tmp_path: Path, server: str, mcp: str, own: str, where: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, mcp, server, own)
    assert where in str(caught.value) and says in str(caught.value), str(caught.value)


def test_the_allow_list_adds_the_agents_own_servers(tmp_path: Path) -> None:
    own = "    mcp_servers:\n      files:\n        command: [files-server]"
    config = _load(tmp_path, "[notes.add_note, notes.list]", STDIO, own)
    assert mcp_allow_list(config, "a") == {"notes": {"add_note", "list"}, "files": None}
