"""`salon logs`: the gateway's log file (JSON lines, rotated), shown, tailed and followed."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from salon import log
from salon.cli import logs as logfile
from salon.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _record(i: int, **extra: object) -> str:
    return json.dumps(
        {
            "event": f"event.{i}",
            "level": "info",
            "logger": "salon.gateway",
            "timestamp": "2025-01-02T03:04:05.678901Z",
            **extra,
        }
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def test_logs_shows_the_last_lines_readably(tmp_path: Path) -> None:
    lines = [_record(i) for i in range(100)]
    lines.append(_record(100, agent="echo", error="backend down"))
    (tmp_path / "salon.log").write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["logs", "--data-dir", str(tmp_path), "-n", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "2025-01-02 03:04:05 info    salon.gateway: event.98",
        "2025-01-02 03:04:05 info    salon.gateway: event.99",
        '2025-01-02 03:04:05 info    salon.gateway: event.100 agent=echo error="backend down"',
    ]
    raw = runner.invoke(app, ["logs", "--data-dir", str(tmp_path), "-n", "1", "--raw"])
    assert raw.stdout == lines[-1] + "\n"


def test_logs_of_the_embedded_synapse(tmp_path: Path) -> None:
    (tmp_path / "synapse").mkdir()
    (tmp_path / "synapse" / "homeserver.log").write_text("2025 - synapse - WARNING - hello\n")
    result = runner.invoke(app, ["logs", "--data-dir", str(tmp_path), "--synapse"])
    assert result.exit_code == 0
    assert result.stdout == "2025 - synapse - WARNING - hello\n"


def test_logs_without_a_log_file_says_who_writes_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["logs", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no log here yet" in result.output and "salon up" in result.output


def test_configure_writes_json_lines_and_rotates(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "salon.log"
    log.configure("info", file=path, console_level="error", max_bytes=2000, backups=2)
    logger = structlog.get_logger("salon.test")
    for i in range(100):
        logger.info("line.written", n=i)
    assert (tmp_path / "salon.log.1").exists() and (tmp_path / "salon.log.2").exists()
    assert not (tmp_path / "salon.log.3").exists()
    assert path.stat().st_size <= 2000
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["event"] == "line.written" and last["n"] == 99
    assert path.stat().st_mode & 0o777 == 0o600  # also the file made by the rollover


def test_a_line_to_the_file_is_formatted_once(
    tmp_path: Path, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standard rotating handler formats each line twice (once to check the size):
    at ``info``, a few lines a message, that was most of their cost."""
    formatted: list[str] = []
    original = structlog.stdlib.ProcessorFormatter.format

    def counting(self: structlog.stdlib.ProcessorFormatter, record: logging.LogRecord) -> str:
        formatted.append(record.getMessage())
        return original(self, record)

    monkeypatch.setattr(structlog.stdlib.ProcessorFormatter, "format", counting)
    path = tmp_path / "salon.log"
    log.configure("info", file=path, console_level="error", max_bytes=2000, backups=1)
    logger = structlog.get_logger("salon.test")
    for i in range(40):
        logger.info("line.written", n=i)
    assert len(formatted) == 40
    assert (tmp_path / "salon.log.1").exists() and path.stat().st_size <= 2000
    assert json.loads(path.read_text().splitlines()[-1])["n"] == 39


def test_follow_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "salon.log"
    path.write_text("old\n")
    seen: list[str] = []
    done = threading.Event()
    thread = threading.Thread(
        target=logfile.follow,
        args=(path, seen.append),
        kwargs={"stop": done.is_set, "poll_s": 0.02},
    )
    thread.start()
    try:
        time.sleep(0.2)
        with path.open("a") as f:
            f.write("one\ntw")
            f.flush()
            time.sleep(0.2)
            f.write("o\n")
        time.sleep(0.2)
        path.rename(tmp_path / "salon.log.1")  # what RotatingFileHandler does
        path.write_text("three\n")
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        done.set()
        thread.join(5)
    assert seen == ["one", "two", "three"]


@pytest.mark.subprocess
def test_logs_follow_in_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "salon.log"
    path.write_text(_record(1) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "salon.cli", "logs", "-d", str(tmp_path), "-f", "-n", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().endswith("salon.gateway: event.1\n")
        with path.open("a") as f:
            f.write(_record(2) + "\n")
        assert proc.stdout.readline().endswith("salon.gateway: event.2\n")
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
