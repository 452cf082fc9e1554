"""`salon agent remove` and what names the agent: refused and listed, or removed
with it (`--force`), every comment of the file kept."""

from __future__ import annotations

from pathlib import Path

from tests.cli.agent_config import COMMENTED, RESEARCHER_BLOCK, _commented, _salon

from salon.config import load_config


def test_remove_refuses_while_named_and_lists_each_reference(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "remove", "researcher", "-c", path, "-d", tmp_path / "d")
    assert code == 2, out
    lines = COMMENTED.splitlines()
    for where, line in (
        ("routes[0].agent", '  - match: {room: "#news:localhost"}   # the news room'),
        ("teams.pair.agents", "    agents:"),
        ("agents.writer.can_delegate_to", "    can_delegate_to:"),
    ):
        assert f"{where} (line {lines.index(line) + 1})" in out
    assert "--force" in out
    assert path.read_text(encoding="utf-8") == COMMENTED

    code, out = _salon("agent", "remove", "writer", "-c", path, "-d", tmp_path / "d")
    assert code == 2, out
    assert "teams.pair.lead" in out and "default_agent" in out
    assert path.read_text(encoding="utf-8") == COMMENTED


def test_force_removes_the_references_and_says_which(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "remove", "researcher", "--force", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "removed route 0 (to researcher)" in out
    assert "removed researcher from the members of team pair" in out
    assert "removed researcher from the delegates of writer" in out
    assert "Kept its home dir" in out and "Matrix room" in out

    after = path.read_text(encoding="utf-8")
    cfg = load_config(path)
    assert "researcher" not in cfg.agents
    assert cfg.teams["pair"].agents == ["writer"]
    assert [r.agent for r in cfg.routes] == ["echo"]
    assert cfg.agents["writer"].can_delegate_to == ["echo"]
    # Exactly these lines deleted: the agent's block (its own comments with it, up to
    # the blank line before the next header) and one line per reference; every other
    # comment, including the commented-out agent after the removed one, stays in place.
    expected = COMMENTED
    for gone in (
        "      - researcher   # asks for facts\n",
        "".join(RESEARCHER_BLOCK[:-1]),
        "      - researcher   # the fact checker\n",
        '  - match: {room: "#news:localhost"}   # the news room\n    agent: researcher\n',
    ):
        assert expected.count(gone) == 1
        expected = expected.replace(gone, "")
    assert after == expected
    assert "  # old agent, kept for reference:\n" in after


def test_force_clears_lead_and_default_agent_and_drops_an_empty_team(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "remove", "writer", "--force", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "removed the lead of team pair (now its first member, researcher)" in out
    assert "cleared default_agent" in out
    cfg = load_config(path)
    assert cfg.default_agent is None
    assert cfg.teams["pair"].lead is None and cfg.teams["pair"].agents == ["researcher"]
    after = path.read_text(encoding="utf-8")
    assert "# The end: settings left at their defaults." in after  # after default_agent

    code, out = _salon("agent", "remove", "researcher", "--force", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "removed team pair (no members left)" in out
    cfg = load_config(path)
    assert cfg.teams == {} and set(cfg.agents) == {"echo"}
    assert [r.agent for r in cfg.routes] == ["echo"]
    after = path.read_text(encoding="utf-8")
    for comment in ("# Teams answer as one.", "# First match wins.", "# The end:", "# old agent"):
        assert comment in after
