"""`salon stop`: the pid file `salon up` / `salon run` keep in their data dir."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from salon.cli import pidfile
from salon.cli.main import app

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[2]
SALON = [sys.executable, "-m", "salon.cli"]
runner = CliRunner()


def _config(synapse: Any, tmp_path: Path) -> Path:
    ns = secrets.token_hex(3)
    data = {
        "homeserver": {
            "url": synapse.base_url,
            "server_name": synapse.server_name,
            "registration_shared_secret": synapse.shared_secret,
        },
        "space": {"alias": f"salon-{ns}", "name": f"Salon {ns}"},
        "router": {"localpart": f"salon-{ns}"},
        "naming": {
            "agent_localpart": f"salon-{ns}_{{id}}",
            "agent_room_alias": f"salon-{ns}-{{id}}",
            "lobby_alias": f"salon-{ns}-lobby",
        },
        "agents": {"echo": {"backend": {"type": "echo"}}},
        "sync": {"startup_jitter_s": 0},
        "data_dir": "state",
        "store": {"url": "sqlite:///state/salon.db"},
        "api": {"listen": "127.0.0.1:0", "token_env": "SALON_TEST_RUN_API_TOKEN"},
    }
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not Salon."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_salon_run_then_stop(synapse: Any, tmp_path: Path) -> None:
    config = _config(synapse, tmp_path)
    data_dir = tmp_path / "state"
    token = secrets.token_hex(8)
    proc = subprocess.Popen(
        [*SALON, "run", "-c", str(config)],
        cwd=ROOT,
        env={**os.environ, "SALON_TEST_RUN_API_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        log_file = data_dir / "salon.log"
        _wait_for(
            lambda: (
                (log_file.exists() and "gateway.ready" in log_file.read_text())
                or proc.poll() is not None
            ),
            60,
            "the gateway to be ready",
        )
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        info = json.loads((data_dir / "salon.pid").read_text())
        assert info["pid"] == proc.pid and info["command"] == "run"

        # With `api:` configured, api.json says where it listens (the real port) and the token.
        api_json = data_dir / "api.json"
        _wait_for(api_json.exists, 10, "api.json")
        api = json.loads(api_json.read_text())
        assert api["token"] == token and api["pid"] == proc.pid
        assert not api["url"].endswith(":0")
        status = runner.invoke(app, ["status", "-c", str(config), "--verbose"])
        assert status.exit_code == 0, status.output
        assert f"using the API at {api['url']}" in status.output
        assert f"(pid {proc.pid}): running, its API answers at {api['url']}" in status.output

        # A second one on the same data dir is refused, and leaves the pid file alone.
        again = runner.invoke(app, ["run", "-c", str(config)])
        assert again.exit_code == 2
        assert f"already running from {data_dir}: salon run (pid {proc.pid})" in again.output
        assert json.loads((data_dir / "salon.pid").read_text())["pid"] == proc.pid

        # `salon logs -c` reads the same file the gateway writes.
        logs = runner.invoke(app, ["logs", "-c", str(config), "-n", "200"])
        assert logs.exit_code == 0, logs.output
        assert "gateway.ready" in logs.stdout

        stopped = subprocess.run(
            [*SALON, "stop", "-c", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stopped.returncode == 0, stopped.stderr
        assert f"Stopped salon run (pid {proc.pid})" in stopped.stdout
        assert proc.wait(10) == 0  # a clean exit, not a kill
        assert not (data_dir / "salon.pid").exists()
        assert not api_json.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    again = runner.invoke(app, ["stop", "-c", str(config)])
    assert again.exit_code == 1
    assert "not running" in again.output


def test_stop_with_no_pid_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stop", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"Salon is not running from {tmp_path}." in result.output


def test_stale_pid_file_is_reported_and_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "salon.pid").write_text(
        json.dumps({"pid": gone.pid, "command": "up", "started_ms": 0, "cmdline": ["salon"]})
    )
    result = runner.invoke(app, ["stop", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "not running" in result.output and "stale pid file" in result.output
    assert not (tmp_path / "salon.pid").exists()


def test_a_reused_pid_is_not_signalled(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    # The pid file names a pid that now belongs to another program.
    (tmp_path / "salon.pid").write_text(
        json.dumps(
            {"pid": sleeper.pid, "command": "up", "started_ms": 0, "cmdline": ["x", "salon"]}
        )
    )
    result = runner.invoke(app, ["stop", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "not running" in result.output
    time.sleep(0.2)
    assert sleeper.poll() is None
    assert not (tmp_path / "salon.pid").exists()


@contextlib.contextmanager
def _stand_in(tmp_path: Path, on_term: str, command: str) -> Iterator[subprocess.Popen[bytes]]:
    """A process standing in for `salon up` / `salon run` (``on_term``: its SIGTERM
    handler), named by the pid file in ``tmp_path``; killed at the end if still there."""
    script = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, {on_term})\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        info = {
            "pid": proc.pid,
            "command": command,
            "started_ms": 0,
            "cmdline": [p.decode() for p in cmdline if p],
        }
        (tmp_path / "salon.pid").write_text(json.dumps(info))
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_signals_the_process_named_by_the_pid_file(tmp_path: Path) -> None:
    # Exits cleanly on SIGTERM, like `salon up` / `salon run`.
    with _stand_in(tmp_path, "lambda *a: sys.exit(0)", "up") as proc:
        result = runner.invoke(app, ["stop", "--data-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert f"Stopped salon up (pid {proc.pid})" in result.output
        assert proc.wait(5) == 0
        assert not (tmp_path / "salon.pid").exists()


def test_stop_gives_up_after_the_timeout(tmp_path: Path) -> None:
    with _stand_in(tmp_path, "signal.SIG_IGN", "run") as proc:
        result = runner.invoke(app, ["stop", "--data-dir", str(tmp_path), "--timeout", "0.5"])
        assert result.exit_code == 1
        assert f"salon run (pid {proc.pid}) is still running after 0.5 s" in result.output
        assert proc.poll() is None
        assert (tmp_path / "salon.pid").exists()


def test_up_refuses_a_data_dir_another_salon_runs_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pidfile.holding(tmp_path, "up") as info:
        assert info.pid == os.getpid()
        # Another process (pid file written by this one) holds the dir: pretend we are not it.
        monkeypatch.setattr(pidfile.os, "getpid", lambda: info.pid + 1)
        result = runner.invoke(app, ["up", "--data-dir", str(tmp_path)])
        monkeypatch.undo()
        assert result.exit_code == 2
        assert f"already running from {tmp_path}: salon up (pid {info.pid})" in result.output
        assert "salon stop --data-dir" in result.output
    assert not (tmp_path / "salon.pid").exists()
