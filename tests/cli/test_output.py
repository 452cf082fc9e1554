"""Output to a pipe or a file is never wrapped or cut at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salon.cli import direct
from salon.cli import operator as ops
from salon.cli.main import app
from salon.coordination.heartbeat import AgentStatus

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

LONG_ALIAS = "#salon-a-research-assistant-with-a-really-long-room-alias-name:matrix.example.org"
LONG_USER = "@salon_a-research-assistant-with-a-long-name:matrix.example.org"


def test_who_keeps_long_aliases_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    row = ops.AgentRow(
        agent="researcher",
        user_id=LONG_USER,
        alias=LONG_ALIAS,
        status=AgentStatus.ONLINE,
        last_beat_ms=None,
    )
    monkeypatch.setattr(direct, "who", lambda data_dir: ops.WhoResult([row], None))
    monkeypatch.setenv("COLUMNS", "80")  # what rich falls back to without a terminal
    result = runner.invoke(app, ["who", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "researcher" in line)
    assert LONG_ALIAS in line and LONG_USER in line and "online" in line
    assert "…" not in result.stdout


@pytest.mark.subprocess
def test_an_error_line_stays_on_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / ("a-data-dir-with-a-name-long-enough-to-pass-eighty-columns" * 2)
    # A real process, stdout and stderr captured: not a terminal.
    result = subprocess.run(
        [sys.executable, "-m", "salon.cli", "who", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert f"{data_dir / 'operator.json'}: not found." in lines[0]
    assert f"`salon up --data-dir {data_dir}`" in lines[0]
