"""`salon agent list | show`: agents, teams and peers; no secrets shown."""

from __future__ import annotations

from pathlib import Path

from tests.cli.agent_config import _commented, _salon


def test_list_shows_agents_teams_and_peers(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    skills = tmp_path / "agents" / "echo" / "skills"
    skills.mkdir(parents=True)
    (skills / "a.md").write_text("one")
    (skills / "b.md").write_text("two")
    code, out = _salon("agent", "list", "-c", path, "-d", tmp_path)
    assert code == 0, out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert set(rows) == {"writer", "researcher", "echo", "pair", "scout"}
    assert "openai qwen2.5" in rows["writer"] and "openai llama3" in rows["researcher"]
    assert "│ 2 " in rows["echo"]
    assert "team" in rows["pair"] and "peer" in rows["scout"]


def test_show_lists_identity_home_soul_skills_cron(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    home = tmp_path / "agents" / "researcher"
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "facts.md").write_text("Cite sources.")
    (home / "SOUL.md").write_text("You dig.")
    code, out = _salon("agent", "show", "researcher", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "@salon_researcher:localhost" in out
    assert "#salon-researcher:localhost" in out
    assert str(home) in out
    assert "present (8 bytes)" in out
    assert "facts.md (13 bytes)" in out
    assert "cron digest" in out and "0 9 * * *" in out and "Summarise the news" in out


def test_show_hides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_text(
        "homeserver: {url: http://127.0.0.1:8008, server_name: example.org}\n"
        "agents:\n"
        "  up:\n"
        "    backend:\n"
        "      type: http\n"
        "      base_url: https://user:hunter2@upstream.example/v1\n"
        "      headers: {Authorization: Bearer s3cr3t}\n"
        "      token_env: UP_TOKEN\n"
    )
    code, out = _salon("agent", "show", "up", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "hunter2" not in out and "s3cr3t" not in out
    assert "Authorization: ***" in out and "UP_TOKEN" in out
    assert "@salon_up:example.org" in out  # from the roster of the homeserver


MCP_CONFIG = """
agents:
  keeper:
    backend: echo
    mcp: [notes.add_note, web]
    mcp_servers:
      files:
        command: [files-server]
  plain:
    backend: echo
    can_delegate_to: []
mcp_servers:
  notes:
    command: [python, notes.py]
  web:
    url: https://mcp.example.org/mcp
    token_env: WEB_TOKEN
"""


def test_show_lists_the_agents_tools(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_text(MCP_CONFIG, encoding="utf-8")
    code, out = _salon("agent", "show", "keeper", "-c", path, "-d", tmp_path)
    assert code == 0, out
    flat = " ".join(out.split())
    assert "delegate; mcp__notes__* (notes, stdio: add_note)" in flat
    assert "mcp__web__* (web, http: all tools)" in flat
    assert "mcp__files__* (files, own stdio: all tools)" in flat
    code, out = _salon("agent", "show", "plain", "-c", path, "-d", tmp_path)
    assert code == 0 and " ".join(out.split()).count("tools none") == 1, out


def test_an_mcp_entry_naming_no_server_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_text(MCP_CONFIG.replace("[notes.add_note, web]", "[notes, nope.x]"))
    code, out = _salon("agent", "show", "keeper", "-c", path, "-d", tmp_path)
    assert code != 0
    assert "agents.keeper.mcp.1" in out and "unknown MCP server 'nope'" in out
