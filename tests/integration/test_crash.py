"""Exactly-once turns across kill -9: a real `salon run` process, killed and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from .conftest import Person, salon_config

ROOT = Path(__file__).resolve().parents[2]


def _write_config(synapse: Any, tmp_path: Path, person: Person, agents: dict[str, Any]) -> Path:
    config = salon_config(
        synapse,
        tmp_path,
        agents=agents,
        access={"admins": [person.user_id]},
        replies={"max_attempts": 2},
    )
    data = config.model_dump(mode="json", exclude_none=True)
    data["agents"] = {a: v for a, v in data["agents"].items() if a in agents}
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


class Process:
    """`salon run` in a child process, with its output collected."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "salon.cli", "run", "-c", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "gateway.ready" in line:
                self.ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        if not self.ready.wait(timeout):
            raise AssertionError("gateway not ready:\n" + "".join(self.lines[-40:]))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@contextmanager
def running(config: Path) -> Iterator[Process]:
    process = Process(config)
    try:
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.terminate()
            process.proc.wait(20)


async def _replies_by_question(person: Person, room_id: str) -> dict[str, list[str]]:
    history = [e for e in await person.history(room_id, limit=200) if e["type"] == "m.room.message"]
    asked = {e["event_id"]: e["content"]["body"] for e in history if e["sender"] == person.user_id}
    answers: dict[str, list[str]] = {body: [] for body in asked.values()}
    for event in history:
        content = event["content"]
        rel = content.get("m.relates_to") or {}
        target = (rel.get("m.in_reply_to") or {}).get("event_id")
        if event["sender"] != person.user_id and rel.get("rel_type") != "m.replace" and target:
            answers[asked[target]].append(content["body"])
    return answers


async def test_every_message_gets_exactly_one_reply_across_kill_9(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    agents = {"slow": {"backend": {"type": "echo", "delay_s": 1.5}}}
    config_path = _write_config(synapse, tmp_path, person, agents)
    config = yaml.safe_load(config_path.read_text())
    alias = f"#{config['naming']['agent_room_alias'].replace('{id}', 'slow')}:{synapse.server_name}"
    questions = [f"q{i}" for i in range(8)]

    with running(config_path) as first:
        first.wait_ready()
        room_id = await person.join(alias)
        sent = [await person.say(room_id, q) for q in questions[:3]]
        await person.wait_reply(room_id, sent[0])
        for q in questions[3:6]:
            await person.say(room_id, q)  # arriving while turns are in flight
        await asyncio.sleep(0.3)
        first.kill()
    for q in questions[6:]:
        await person.say(room_id, q)  # sent while the gateway is down

    with running(config_path) as second:
        second.wait_ready()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            answers = await _replies_by_question(person, room_id)
            if all(answers[q] for q in questions):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # room for a duplicate to show up, if there were one
        answers = await _replies_by_question(person, room_id)
    assert answers == {q: [q] for q in questions}


async def test_a_turn_that_keeps_crashing_gives_up_and_says_so(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    agents = {
        "fragile": {"backend": {"type": "python", "entry": "tests.integration.plugins:crash"}}
    }
    config_path = _write_config(synapse, tmp_path, person, agents)
    config = yaml.safe_load(config_path.read_text())
    pattern = config["naming"]["agent_room_alias"]
    alias = f"#{pattern.replace('{id}', 'fragile')}:{synapse.server_name}"

    with running(config_path) as process:
        process.wait_ready()
        room_id = await person.join(alias)
        asked = await person.say(room_id, "please crash")
        assert process.proc.wait(20) == -signal.SIGKILL
    # Each restart retries the turn and crashes again, until the attempts run out.
    for _ in range(3):
        with running(config_path) as process:
            process.wait_ready()
            try:
                process.proc.wait(5)
            except subprocess.TimeoutExpired:
                break  # stayed up: the turn was given up
    notice = await person.wait_reply(room_id, asked, timeout=20)
    assert notice["content"]["msgtype"] == "m.notice"
    assert "gave up" in notice["content"]["body"]
    later = await person.say(room_id, "still alive?")
    with running(config_path) as process:
        process.wait_ready()
        reply = await person.wait_reply(room_id, later)
    assert reply["content"]["body"] == "fine: still alive?"
