"""Graceful shutdown of a real `salon run` process: SIGTERM lets a running reply
finish within `shutdown.drain_s`; a second SIGTERM stops at once, and the reply it
cut off is given after the next start, once."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from salon.coordination.heartbeat import AGENT_STATE

from . import test_crash as crash
from .conftest import Person, salon_config

DELAY_S = 3  # the echo agent's thinking time: every reply takes this long
DRAIN_S = 10


class Process(crash.Process):
    """`salon run` in a child process, with what a shutdown test needs on top."""

    def output(self) -> str:
        return "".join(self.lines[-60:])

    def term(self) -> float:
        """Send SIGTERM; when it was sent (monotonic)."""
        self.proc.send_signal(signal.SIGTERM)
        return time.monotonic()

    async def exited(self, timeout: float) -> tuple[int, float]:
        """Wait for the process to end (without blocking the loop): its code, and when."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s:\n" + self.output())
            await asyncio.sleep(0.02)
        return self.proc.returncode, time.monotonic()


@contextmanager
def running(config: Path) -> Iterator[Process]:
    process = Process(config)
    try:
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(10)


def _write_config(synapse: Any, tmp_path: Path, person: Person) -> tuple[Path, dict[str, Any]]:
    config = salon_config(
        synapse,
        tmp_path,
        agents={"slow": {"backend": {"type": "echo", "delay_s": DELAY_S}}},
        access={"admins": [person.user_id]},
        shutdown={"drain_s": DRAIN_S},
    )
    data = config.model_dump(mode="json", exclude_none=True)
    data["agents"] = {"slow": data["agents"]["slow"]}
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path, data


def _events(log_file: Path, name: str) -> list[dict[str, Any]]:
    """The gateway's JSON log lines for the event ``name``."""
    found = []
    for line in log_file.read_text(encoding="utf-8").splitlines():
        with_event = json.loads(line) if line.startswith("{") else {}
        if with_event.get("event") == name:
            found.append(with_event)
    return found


async def _answers(person: Person, room_id: str) -> dict[str, list[str]]:
    """Each of the person's messages, with the bodies of the replies to it."""
    history = [e for e in await person.history(room_id, limit=200) if e["type"] == "m.room.message"]
    asked = {e["event_id"]: e["content"]["body"] for e in history if e["sender"] == person.user_id}
    answers: dict[str, list[str]] = {body: [] for body in asked.values()}
    for event in history:
        rel = event["content"].get("m.relates_to") or {}
        target = (rel.get("m.in_reply_to") or {}).get("event_id")
        if event["sender"] != person.user_id and rel.get("rel_type") != "m.replace" and target:
            answers[asked[target]].append(event["content"]["body"])
    return answers


async def _status(person: Person, room_id: str, user_id: str) -> str:
    state = await person.state(room_id)
    beat = next(e for e in state if e["type"] == AGENT_STATE and e["state_key"] == user_id)
    return str(beat["content"]["status"])


async def test_sigterm_lets_the_reply_finish_and_a_second_one_stops_at_once(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    config_path, config = _write_config(synapse, tmp_path, person)
    alias = f"#{config['naming']['agent_room_alias'].replace('{id}', 'slow')}:{synapse.server_name}"
    localpart = config["naming"]["agent_localpart"].replace("{id}", "slow")
    agent_user = f"@{localpart}:{synapse.server_name}"
    log_file = tmp_path / "salon-data" / "salon.log"

    # 1. One SIGTERM, one second into a 3-second reply: the reply is finished and
    #    sent, a message arriving meanwhile waits for the next start, exit code 0.
    with running(config_path) as first:
        first.wait_ready()
        room_id = await person.join(alias)
        await person.say(room_id, "finish me")
        await asyncio.sleep(1.0)
        signalled = first.term()
        await asyncio.sleep(0.3)
        await person.say(room_id, "after the signal")
        code, ended = await first.exited(DRAIN_S + 10)
        assert code == 0, first.output()
        # It waited for the reply (about 2 s more), not for the whole drain.
        assert 1.0 <= ended - signalled < DRAIN_S, first.output()
    answers = await _answers(person, room_id)
    assert answers == {"finish me": ["finish me"], "after the signal": []}
    assert await _status(person, room_id, agent_user) == "offline"
    [drained] = _events(log_file, "gateway.drained")
    assert (drained["finished"], drained["cut_off"]) == (1, 0)

    # 2. The next start answers what arrived during the drain. Then SIGTERM during a
    #    reply, and a second SIGTERM: the process ends at once, the reply unsent.
    with running(config_path) as second:
        second.wait_ready()
        for _ in range(100):
            if (await _answers(person, room_id))["after the signal"]:
                break
            await asyncio.sleep(0.2)
        await person.say(room_id, "cut me off")
        await asyncio.sleep(1.0)
        first_signal = second.term()
        await asyncio.sleep(0.5)
        assert second.proc.poll() is None, "the first SIGTERM alone must wait for the reply"
        second_signal = second.term()
        code, ended = await second.exited(DRAIN_S + 10)
        assert code == 0, second.output()
        assert ended - second_signal < 1.5, second.output()
        # Well before the reply could have been done (DELAY_S after it started).
        assert ended - first_signal < DELAY_S - 1.0 + 0.5, second.output()
    answers = await _answers(person, room_id)
    assert answers["after the signal"] == ["after the signal"]
    assert answers["cut me off"] == []
    drained = _events(log_file, "gateway.drained")[-1]
    assert drained["cut_off"] == 1 and drained["stopped_at_once"] is True

    # 3. After a restart the cut-off message is answered, exactly once.
    with running(config_path) as third:
        third.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (await _answers(person, room_id))["cut me off"]:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(DELAY_S + 1)  # room for a duplicate, if there were one
        third.term()
        code, _ = await third.exited(DRAIN_S + 10)
        assert code == 0, third.output()
    assert await _answers(person, room_id) == {
        "finish me": ["finish me"],
        "after the signal": ["after the signal"],
        "cut me off": ["cut me off"],
    }
