"""`salon agent add | remove`: the config file edited in place.

`add` / `remove` edit the YAML file in place: every comment, blank line, quote
and the order of the keys they do not touch stay as they were; the result is
validated with the real loader first, and a refused edit leaves the file
byte-for-byte unchanged. What names an agent (`remove` refused, or `--force`) is
test_agent_refs.py; list and show test_agent_show.py; reload test_reload.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.cli.agent_config import COMMENTED, EXAMPLE, _changes, _commented, _salon

from salon.config import load_config


@pytest.fixture(params=["example", "commented"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of examples/salon.yaml, or of the purpose-written one, in tmp_path."""
    path = tmp_path / "salon.yaml"
    if request.param == "example":
        shutil.copyfile(EXAMPLE, path)
    else:
        path.write_text(COMMENTED, encoding="utf-8")
    return path


# ------------------------------------------------------------ add then remove


@pytest.mark.parametrize(
    "options",
    [
        ["--backend", "openai", "--model", "qwen2.5", "--label", "Coder"],
        ["--backend", "http", "--base-url", "http://127.0.0.1:9000", "--description", "a: b"],
        ["--backend", "python", "--entry", "salon.demo.clock:Clock"],
    ],
)
def test_add_then_remove_keeps_the_file(config: Path, options: list[str]) -> None:
    before = config.read_text(encoding="utf-8")
    code, out = _salon("agent", "add", "coder", *options, "-c", config)
    assert code == 0, out
    added = config.read_text(encoding="utf-8")

    # Only lines added, all of them one block: the new agent at the end of `agents:`,
    # before the next section's comments.
    changes = _changes(before, added)
    assert [tag for tag, _, _ in changes] == ["insert"], changes
    block = "".join(changes[0][2])
    assert block.startswith("  coder:\n"), block
    assert "#" not in block  # no comment moved into (or out of) it
    assert added.index("  coder:") < added.index("teams:")
    assert "coder" in load_config(config).agents

    code, out = _salon("agent", "remove", "coder", "-c", config)
    assert code == 0, out
    assert config.read_text(encoding="utf-8") == before


def test_add_lands_before_the_next_sections_header(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    shutil.copyfile(EXAMPLE, path)
    assert _salon("agent", "add", "coder", "-c", path)[0] == 0
    text = path.read_text(encoding="utf-8")
    # The assistant's commented-out options stay with it, the team header with `teams:`.
    assert text.index("# max_tool_calls_per_round") < text.index("  coder:")
    assert text.index("  coder:") < text.index("# A team has its own user")


def test_add_creates_home_and_soul(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    data_dir = tmp_path / "data"
    code, out = _salon(
        "agent", "add", "poet", "--persona", "You write haiku.", "-c", path, "-d", data_dir
    )
    assert code == 0, out
    home = data_dir / "agents" / "poet"
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / "SOUL.md").read_text(encoding="utf-8") == "You write haiku."
    assert "No gateway runs from" in out
    # Removed, then added again: the home and its SOUL.md were kept and are reused.
    assert _salon("agent", "remove", "poet", "-c", path, "-d", data_dir)[0] == 0
    assert (home / "SOUL.md").exists()
    code, out = _salon("agent", "add", "poet", "--persona", "Other.", "-c", path, "-d", data_dir)
    assert code == 0, out
    assert (home / "SOUL.md").read_text(encoding="utf-8") == "You write haiku."
    assert "kept the SOUL.md already there" in out


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("agent_id", "options", "says"),
    [
        ("Bad Id", [], "invalid agent id 'Bad Id'"),  # the loader's own error
        ("-x", [], "invalid agent id"),
        ("echo", [], "'echo' is already an agent"),
        ("pair", [], "'pair' is already a team"),
        ("scout", [], "'scout' is a peer"),
        ("coder", ["--backend", "openai"], "agents.coder.backend.model"),  # model missing
        ("coder", ["--model", "gpt"], "--model: not an option of the echo backend"),
        ("coder", ["--backend", "telepathy"], "use one of echo, openai, http, python"),
    ],
)
def test_add_refuses_and_leaves_the_file(
    tmp_path: Path, agent_id: str, options: list[str], says: str
) -> None:
    path = _commented(tmp_path)
    data_dir = tmp_path / "data"
    # `--` so that an id starting with '-' is taken as the id.
    code, out = _salon("agent", "add", "-c", path, "-d", data_dir, *options, "--", agent_id)
    assert code == 2, out
    assert says in out
    assert path.read_text(encoding="utf-8") == COMMENTED
    assert not data_dir.exists()


def test_invalid_id_error_points_at_the_line(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "add", "Bad", "-c", path, "-d", tmp_path / "d")
    assert code == 2
    assert f"{path}:" in out and "agents.Bad" in out
    assert "is unchanged" in out


def test_remove_unknown_or_peer_is_refused(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "remove", "nobody", "-c", path, "-d", tmp_path / "d")
    assert code == 2 and "unknown agent 'nobody'" in out
    code, out = _salon("agent", "remove", "scout", "-c", path, "-d", tmp_path / "d")
    assert code == 2 and "is a peer" in out
    assert path.read_text(encoding="utf-8") == COMMENTED


def test_refused_when_the_result_would_not_load(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_text("# only one\nagents:\n  solo:  # the one\n    backend: echo\n")
    before = path.read_text()
    code, out = _salon("agent", "remove", "solo", "-c", path, "-d", tmp_path / "d")
    assert code == 2
    assert "at least one agent is required" in out
    assert path.read_text() == before
