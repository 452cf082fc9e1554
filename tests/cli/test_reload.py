"""`salon reload`, and `salon agent add | remove` asking the running gateway to reload
(SIGHUP, only to a gateway that handles it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.agent_config import COMMENTED, _commented, _salon

from salon.cli import pidfile

pytestmark = pytest.mark.subprocess

CHILD = """
import signal, sys, time
from pathlib import Path
from salon.cli import agents_cmd, pidfile

data_dir, marker, trap = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "trap"
if trap:
    signal.signal(signal.SIGHUP, lambda *_: marker.write_text("reloaded"))
with pidfile.holding(data_dir, "run"):
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, Path]]:
    """A stand-in for a running gateway: holds <data_dir>/salon.pid; with ``trap``
    it writes a marker file on SIGHUP. Yields (data dir, marker)."""
    trap = getattr(request, "param", "trap")
    data_dir, marker = tmp_path / "data", tmp_path / "hup"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), str(marker), trap],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield data_dir, marker
        assert proc.poll() is None, "the stand-in gateway died"
    finally:
        proc.kill()
        proc.wait()


def _wait_for(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_reload_signals_the_running_gateway(gateway: tuple[Path, Path]) -> None:
    data_dir, marker = gateway
    code, out = _salon("reload", "--data-dir", data_dir)
    assert code == 0, out
    assert "Asked salon run (pid" in out
    assert _wait_for(marker)


def test_reload_finds_the_gateway_through_the_config(
    gateway: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir, marker = gateway
    path = tmp_path / "salon.yaml"
    path.write_text(f"data_dir: {data_dir}\nagents: {{e: {{backend: echo}}}}\n")
    code, out = _salon("reload", "-c", path)
    assert code == 0, out
    assert _wait_for(marker)


def test_reload_without_a_gateway_says_not_running(tmp_path: Path) -> None:
    code, out = _salon("reload", "--data-dir", tmp_path)
    assert code == 1
    assert f"Salon is not running from {tmp_path}" in out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.parametrize("gateway", ["no-trap"], indirect=True)
def test_reload_spares_a_gateway_without_a_sighup_handler(gateway: tuple[Path, Path]) -> None:
    data_dir, _ = gateway
    code, out = _salon("reload", "--data-dir", data_dir)
    assert code == 1
    assert "does not reload on SIGHUP" in out
    # The fixture checks it still runs: SIGHUP's default action would have ended it.
    info = pidfile.running(data_dir)
    assert info is not None and pidfile.handles_signal(info.pid, signal.SIGHUP) is False


def test_add_and_remove_tell_the_running_gateway(
    gateway: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir, marker = gateway
    path = _commented(tmp_path)
    code, out = _salon("agent", "add", "coder", "-c", path, "-d", data_dir)
    assert code == 0, out
    assert "Asked salon run (pid" in out and "to reload its config" in out
    assert _wait_for(marker)
    marker.unlink()
    code, out = _salon("agent", "remove", "coder", "-c", path, "-d", data_dir)
    assert code == 0, out
    assert _wait_for(marker)
    assert path.read_text(encoding="utf-8") == COMMENTED


def test_stale_pid_file_is_not_running(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pidfile.path(tmp_path).write_text(
        f'{{"pid": {proc.pid}, "command": "run", "started_ms": 0, "cmdline": ["x"]}}'
    )
    code, out = _salon("reload", "--data-dir", tmp_path)
    assert code == 1 and "stale pid file" in out
    assert not pidfile.path(tmp_path).exists()


def test_pid_of_this_process_handles_what_it_traps() -> None:
    # The check reads /proc (Linux, where Salon runs); elsewhere it sends the signal anyway.
    assert Path("/proc/self/status").exists()
    old = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        assert pidfile.handles_signal(os.getpid(), signal.SIGUSR1) is True
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert pidfile.handles_signal(os.getpid(), signal.SIGUSR2) is False
