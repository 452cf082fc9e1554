"""`salon up` end to end: the real command, an embedded Synapse, the operator's CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from salon.devserver.synapse import free_port

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[2]
SALON = [sys.executable, "-m", "salon.cli"]


def _salon(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SALON, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


# The agents of these tests (not the demo's, which may change): two offline ones,
# and one behind an OpenAI-compatible endpoint given with --openai-base-url.
CONFIG = """\
agents:
  echo: {backend: {type: echo}}
  parrot: {backend: {type: echo, prefix: "🦜 "}}
  assistant:
    backend:
      type: openai
      base_url: ${SALON_OPENAI_BASE_URL:-http://127.0.0.1:9/v1}
      model: test
      max_retries: 0
default_agent: parrot
"""


@dataclass
class Running:
    proc: subprocess.Popen[str]
    lines: list[str]  # what it printed so far


@contextmanager
def salon_up(data_dir: Path, port: int, *extra: str) -> Iterator[Running]:
    """Run `salon up` until it says it is running; stop it afterwards if still alive."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    config = data_dir.parent / "salon.yaml"
    config.write_text(CONFIG)
    proc = subprocess.Popen(
        [*SALON, "up", "-c", str(config), "--data-dir", str(data_dir), "--port", str(port), *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Salon is running" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(120):
            raise AssertionError("salon up did not become ready:\n" + "".join(lines))
        yield Running(proc, lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    """GET ``url`` (with the bearer token): the status and the JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _rooms(data_dir: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(data_dir / "salon.db") as db:
        return sorted(db.execute("SELECT room_id, kind, agent_id FROM rooms").fetchall())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text()


def test_salon_up_then_talk_then_stop_then_up_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    dead_llm = f"http://127.0.0.1:{free_port()}/v1"
    with salon_up(data_dir, port, "--openai-base-url", dead_llm) as running:
        proc = running.proc
        assert (data_dir / "operator.json").exists()
        # The start-up panel's example is the config's default agent.
        assert any('--to parrot "hello"' in line for line in running.lines)
        who = _salon("who", "--data-dir", str(data_dir))
        assert who.returncode == 0, who.stderr
        assert "echo" in who.stdout and "parrot" in who.stdout and "assistant" in who.stdout
        assert who.stdout.count("online") == 3

        # The HTTP API is on, on loopback; its URL and token are in api.json (owner only).
        api_json = data_dir / "api.json"
        assert stat.S_IMODE(api_json.stat().st_mode) == 0o600
        api = json.loads(api_json.read_text())
        assert api["url"].startswith("http://127.0.0.1:") and api["token"]
        assert any(f"HTTP API on {api['url']}" in line for line in running.lines)
        assert _get(f"{api['url']}/healthz") == (200, {"ok": True})
        assert _get(f"{api['url']}/api/v1/agents")[0] == 401
        code, agents = _get(f"{api['url']}/api/v1/agents", api["token"])
        assert code == 200 and len(agents["agents"]) == 3  # type: ignore[arg-type]
        # `salon who` goes through it: without operator.json the direct path cannot answer.
        operator_json = data_dir / "operator.json"
        hidden = operator_json.rename(data_dir / "operator.json.away")
        try:
            via_api = _salon("who", "--data-dir", str(data_dir), "--verbose")
        finally:
            hidden.rename(operator_json)
        assert via_api.returncode == 0, via_api.stderr
        assert f"using the API at {api['url']}" in via_api.stderr
        assert via_api.stdout.count("online") == 3

        sent = _salon("send", "--data-dir", str(data_dir), "--to", "parrot", "hello there")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() == "🦜 hello there"

        # No model server behind the demo's assistant: a clear error, a non-zero exit.
        llm = _salon("send", "--data-dir", str(data_dir), "--to", "assistant", "hi")
        assert llm.returncode == 1
        assert f"cannot reach {dead_llm}" in llm.stderr

        lobby = _salon("send", "--data-dir", str(data_dir), "hi everyone")
        assert lobby.returncode == 0 and "lobby" in lobby.stdout

        read = _salon("read", "--data-dir", str(data_dir), "--room", "parrot", "-n", "5")
        assert "hello there" in read.stdout and "🦜 hello there" in read.stdout

        # echo asks parrot; echo's answer carries parrot's result.
        dlg = _salon(
            "delegate", "--data-dir", str(data_dir), "--from", "echo", "--to", "parrot", "hi"
        )
        assert dlg.returncode == 0, dlg.stderr
        assert "🦜 task" not in dlg.stdout and "🦜 hi" in dlg.stdout
        status = _salon("status", "--data-dir", str(data_dir))
        assert status.returncode == 0, status.stderr
        assert "open delegations" in status.stdout and "turns in flight" in status.stdout
        assert f"(pid {proc.pid}): running" in status.stdout

        logs = _salon("logs", "--data-dir", str(data_dir), "-n", "1000")
        assert logs.returncode == 0 and "gateway.ready" in logs.stdout
        assert _salon("logs", "--data-dir", str(data_dir), "--synapse").returncode == 0

        synapse_pid = int((data_dir / "synapse" / "homeserver.pid").read_text())
        assert json.loads((data_dir / "salon.pid").read_text())["pid"] == proc.pid
        stopped = _salon("stop", "--data-dir", str(data_dir))
        assert stopped.returncode == 0, stopped.stderr
        assert f"Stopped salon up (pid {proc.pid})" in stopped.stdout
        assert proc.wait(30) == 0
        assert not (data_dir / "salon.pid").exists()
        assert not api_json.exists()  # removed on a clean exit
        # The hint to start again repeats the options given.
        assert (
            f"Start again with `salon up --config {data_dir.parent / 'salon.yaml'}"
            f" --data-dir {data_dir} --port {port} --openai-base-url {dead_llm}`"
        ) in "".join(running.lines).replace("\n", "")
        status = _salon("status", "--data-dir", str(data_dir))
        assert "not running (last seen" in status.stdout
    # No orphan: the embedded homeserver went down with Salon.
    deadline = time.monotonic() + 10
    while _pid_alive(synapse_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(synapse_pid)
    first_rooms = _rooms(data_dir)
    assert [kind for _, kind, _ in first_rooms].count("agent") == 3

    # A second `salon up` on the same data dir reuses everything; Ctrl-C stops it cleanly.
    with salon_up(data_dir, port) as running:
        proc = running.proc
        assert _rooms(data_dir) == first_rooms
        read = _salon("read", "--data-dir", str(data_dir), "--room", "parrot")
        assert "🦜 hello there" in read.stdout  # state kept
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
