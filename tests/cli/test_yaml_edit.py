"""The config file as `salon agent add | remove` write it: its mode, its line
endings, not over someone's edit, and the lines the YAML writer would change kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.cli.agent_config import COMMENTED, _commented, _salon

from salon.cli import agents_cmd
from salon.cli.agents_cmd import splice


def test_add_keeps_the_file_mode(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    path.chmod(0o640)
    assert _salon("agent", "add", "coder", "-c", path, "-d", tmp_path / "d")[0] == 0
    assert path.stat().st_mode & 0o777 == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_crlf_file_keeps_its_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_bytes(COMMENTED.replace("\n", "\r\n").encode())
    assert _salon("agent", "add", "coder", "-c", path, "-d", tmp_path / "d")[0] == 0
    raw = path.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert _salon("agent", "remove", "coder", "-c", path, "-d", tmp_path / "d")[0] == 0
    assert path.read_bytes() == COMMENTED.replace("\n", "\r\n").encode()


def test_a_file_changed_meanwhile_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _commented(tmp_path)
    validate = agents_cmd._validate

    def validate_then_someone_edits(*args: Any) -> Any:
        result = validate(*args)
        path.write_text(COMMENTED + "# edited by hand meanwhile\n", encoding="utf-8")
        return result

    monkeypatch.setattr(agents_cmd, "_validate", validate_then_someone_edits)
    code, out = _salon("agent", "add", "coder", "-c", path, "-d", tmp_path / "d")
    assert code == 2
    assert "changed while it was being edited" in out
    assert path.read_text(encoding="utf-8") == COMMENTED + "# edited by hand meanwhile\n"


def test_splice_keeps_lines_the_writer_would_change() -> None:
    original = "a: null   # spelled out\nb: 1\n"
    noop = "a:   # spelled out\nb: 1\n"  # what ruamel writes back
    edited = "a:   # spelled out\nb: 1\nc: 2\n"
    assert splice(original, noop, edited) == "a: null   # spelled out\nb: 1\nc: 2\n"
    # An edit of a line the writer changes cannot be spliced.
    assert splice(original, noop, "a: 3\nb: 1\n") is None
