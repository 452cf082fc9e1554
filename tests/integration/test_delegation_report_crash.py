"""A delegation result whose report turn is cut by kill -9 is reported exactly once
after the restart (issue 8, finding 7).

``!delegate beta <task>`` in alpha's room always takes the report path: beta's
result becomes a ledgered ``report:<delegation id>`` turn of alpha, and counts as
delivered (``reinjected``) only when that turn has closed. The process is killed
while that turn runs, after its first message went out; the restarted process
must finish that same message (no second one) and only then mark the result
delivered.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import yaml

from .conftest import Person, salon_config
from .test_crash import running

PLUGINS = "tests.integration.plugins"
TASK = "write a haiku about ledgers"
RESULT = f"beta did: {TASK}"
REPORT = f"alpha reports: {RESULT}"


def _write_config(synapse: Any, tmp_path: Path, person: Person) -> tuple[Path, dict[str, Any]]:
    config = salon_config(
        synapse,
        tmp_path,
        agents={
            "alpha": {
                "backend": {
                    "type": "python",
                    "entry": f"{PLUGINS}:slow_report",
                    "options": {"delay_s": 3},
                },
                "can_delegate_to": ["beta"],
            },
            "beta": {"backend": {"type": "echo", "prefix": "beta did: "}},
        },
        access={"admins": [person.user_id]},
    )
    data = config.model_dump(mode="json", exclude_none=True)
    data["agents"] = {a: data["agents"][a] for a in ("alpha", "beta")}
    data["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path, data


def _query(tmp_path: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Rows straight from the gateway's SQLite file (it may be running or dead)."""
    db = sqlite3.connect(tmp_path / "salon.db", timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def _delegation(tmp_path: Path) -> sqlite3.Row | None:
    rows = _query(tmp_path, "SELECT * FROM delegations WHERE direction = 'out'")
    assert len(rows) <= 1, [dict(r) for r in rows]
    return rows[0] if rows else None


def _report_turns(tmp_path: Path) -> list[sqlite3.Row]:
    return _query(tmp_path, "SELECT * FROM turns WHERE kind = 'report'")


async def _until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _reports(person: Person, room_id: str, alpha: str) -> list[dict[str, Any]]:
    """alpha's report messages in the room (edits excluded), each with its newest version."""
    history = await person.history(room_id, limit=300)
    newest: dict[str, dict[str, Any]] = {}
    for event in history:
        rel = event["content"].get("m.relates_to") or {}
        if rel.get("rel_type") == "m.replace" and event["sender"] == alpha:
            newest[rel["event_id"]] = event["content"].get("m.new_content") or {}
    return [
        {"event": e, "shown": newest.get(e["event_id"], e["content"])}
        for e in history
        if e["type"] == "m.room.message"
        and e["sender"] == alpha
        and (e["content"].get("m.relates_to") or {}).get("rel_type") != "m.replace"
        and "alpha reports" in e["content"].get("body", "")
    ]


async def test_a_report_turn_killed_mid_way_reports_the_result_exactly_once(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    config_path, data = _write_config(synapse, tmp_path, person)
    server = synapse.server_name
    pattern = data["naming"]["agent_room_alias"]
    alpha = f"@{data['naming']['agent_localpart'].replace('{id}', 'alpha')}:{server}"
    beta = f"@{data['naming']['agent_localpart'].replace('{id}', 'beta')}:{server}"

    with running(config_path) as process:
        process.wait_ready()
        room_id = await person.join(f"#{pattern.replace('{id}', 'alpha')}:{server}")
        beta_room = await person.join(f"#{pattern.replace('{id}', 'beta')}:{server}")

        async def beta_online() -> bool:
            for event in await person.state(beta_room):
                if event["type"] == "com.salon.agent.state" and event["state_key"] == beta:
                    return bool(event["content"].get("status") == "online")
            return False

        await _until("beta online", beta_online, 20)  # else !delegate answers [OFFLINE]
        command = await person.say(room_id, f"!delegate beta {TASK}")

        async def report_running() -> sqlite3.Row | None:
            rows = [r for r in _report_turns(tmp_path) if r["state"] == "running"]
            return rows[0] if rows else None

        turn = await _until("the report turn to run", report_running, 30)
        record = _delegation(tmp_path)
        assert record is not None and turn["event_id"] == f"report:{record['id']}"
        # Its first message is out ("alpha reports: "), the result is 3 s away: kill.
        await _until("the report's first message", lambda: _reports(person, room_id, alpha), 10)
        process.kill()

    # Killed mid-turn: the result is not counted as delivered, the turn is open.
    record = _delegation(tmp_path)
    assert record is not None
    assert record["state"] == "completed" and record["result"] == RESULT, dict(record)
    assert record["reinjected"] == 0, dict(record)
    (turn,) = _report_turns(tmp_path)
    assert turn["state"] == "running" and turn["attempts"] == 1, dict(turn)
    (shown,) = await _reports(person, room_id, alpha)
    assert shown["shown"]["body"] != REPORT  # what the room showed when it died: partial

    with running(config_path) as process:
        process.wait_ready()

        async def delivered() -> bool:
            current = _delegation(tmp_path)
            turns = _report_turns(tmp_path)
            return bool(
                current is not None
                and current["reinjected"] == 1
                and turns
                and all(t["state"] == "replied" for t in turns)
            )

        await _until("the report turn to close and the result to count", delivered, 30)

    # The report turn closed after its sends, so the room shows everything it will.
    (turn,) = _report_turns(tmp_path)  # one report turn for the delegation, never two
    assert turn["event_id"] == f"report:{record['id']}" and turn["agent_id"] == "alpha"
    assert turn["state"] == "replied" and turn["attempts"] == 2, dict(turn)
    reports = await _reports(person, room_id, alpha)
    assert len(reports) == 1, [r["shown"].get("body") for r in reports]  # exactly once
    (report,) = reports
    assert report["event"]["event_id"] == turn["reply_event_id"]
    assert report["event"]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == command
    assert report["shown"]["body"] == REPORT
    assert report["shown"]["com.salon.turn"]["final"] is True
