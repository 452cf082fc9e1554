"""Streamed replies across kill -9: one message per question, and the final text is
the newest version a client shows (issue 8, finding 2).

A real `salon run` child process streams replies (a message, then `m.replace` edits)
and is killed while edits are in flight, or right after its final edit was sent and
before the ledger closed the turn; after a restart every question must show exactly
one reply whose newest version is the complete, final text.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import yaml
from mautrix.api import Method
from mautrix.api import Path as MxPath

from .conftest import Person, salon_config
from .plugins import streamed_text
from .test_crash import running

PLUGINS = "tests.integration.plugins"
COUNT = 20  # chunks per reply
AGENT = "streamer"


def _write_config(synapse: Any, tmp_path: Path, person: Person, **options: Any) -> Path:
    backend = {"type": "python", "entry": f"{PLUGINS}:streaming", "options": options}
    config = salon_config(
        synapse,
        tmp_path,
        agents={AGENT: {"backend": backend}},
        access={"admins": [person.user_id]},
        # Repeated kills of one turn must not reach the "gave up" path.
        replies={"edit_interval_s": 0.2, "max_attempts": 10},
    )
    data = config.model_dump(mode="json", exclude_none=True)
    data["agents"] = {AGENT: data["agents"][AGENT]}
    data["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _alias(config_path: Path, server_name: str) -> str:
    pattern = yaml.safe_load(config_path.read_text())["naming"]["agent_room_alias"]
    return f"#{pattern.replace('{id}', AGENT)}:{server_name}"


def _turns(tmp_path: Path) -> list[sqlite3.Row]:
    """The agent's ledger rows, read straight from the gateway's SQLite file."""
    db = sqlite3.connect(tmp_path / "salon.db", timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM turns WHERE agent_id = ?", (AGENT,)).fetchall()
    finally:
        db.close()


async def _replies(person: Person, room_id: str) -> dict[str, list[dict[str, Any]]]:
    """Per question (its body): every non-edit reply, as ``{"event", "shown", "edits"}``
    where ``shown`` is its newest version in the timeline (the latest ``m.replace``'s
    ``m.new_content``, else the original content)."""
    history = [
        e for e in await person.history(room_id, limit=1000) if e["type"] == "m.room.message"
    ]
    asked = {e["event_id"]: e["content"]["body"] for e in history if e["sender"] == person.user_id}
    edits: dict[str, list[dict[str, Any]]] = {}
    for event in history:  # oldest first: the last edit wins
        rel = event["content"].get("m.relates_to") or {}
        if rel.get("rel_type") == "m.replace":
            edits.setdefault(rel["event_id"], []).append(event["content"].get("m.new_content"))
    found: dict[str, list[dict[str, Any]]] = {body: [] for body in asked.values()}
    for event in history:
        rel = event["content"].get("m.relates_to") or {}
        target = (rel.get("m.in_reply_to") or {}).get("event_id")
        if event["sender"] == person.user_id or rel.get("rel_type") == "m.replace":
            continue
        if target in asked:
            versions = edits.get(event["event_id"], [])
            shown = versions[-1] if versions else event["content"]
            found[asked[target]].append({"event": event, "shown": shown, "edits": len(versions)})
    return found


def _complete(reply: dict[str, Any], question: str) -> bool:
    shown = reply["shown"]
    return bool(
        shown.get("body") == streamed_text(question, COUNT)
        and (shown.get("com.salon.turn") or {}).get("final") is True
    )


async def _server_shown(person: Person, room_id: str, event_id: str) -> dict[str, Any]:
    """What a client shows for ``event_id``: the edit the homeserver bundles with it
    (highest origin_server_ts wins), else the event itself."""
    event = await person.api.api.request(Method.GET, MxPath.v3.rooms[room_id].event[event_id])
    edit = ((event.get("unsigned") or {}).get("m.relations") or {}).get("m.replace")
    if edit and "content" in edit:
        return dict(edit["content"].get("m.new_content") or {})
    return dict(event["content"])


async def _wait_all_closed(
    person: Person, room_id: str, tmp_path: Path, questions: list[str], timeout: float
) -> dict[str, list[dict[str, Any]]]:
    """Wait until every question shows its complete final reply and every ledger row
    is closed; returns the replies as seen after the ledger closed."""
    deadline = time.monotonic() + timeout
    replies: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        replies = await _replies(person, room_id)
        shown = all(any(_complete(r, q) for r in replies.get(q, [])) for q in questions)
        rows = _turns(tmp_path)
        closed = len(rows) == len(questions) and all(r["state"] == "replied" for r in rows)
        if shown and closed:
            # Every turn closed after its last send: what the room shows now is final.
            return await _replies(person, room_id)
        await asyncio.sleep(0.3)
    states = {r["event_id"]: (r["state"], r["attempts"]) for r in _turns(tmp_path)}
    newest = {q: [r["shown"].get("body", "")[-40:] for r in rs] for q, rs in replies.items()}
    raise AssertionError(f"not all replies final within {timeout} s: {newest} {states}")


async def _assert_one_final_reply_each(
    person: Person, room_id: str, replies: dict[str, list[dict[str, Any]]], questions: list[str]
) -> None:
    assert set(replies) == set(questions)
    for question in questions:
        found = replies[question]
        # Exactly one message per question, never a second one.
        assert len(found) == 1, (question, [r["shown"].get("body") for r in found])
        (reply,) = found
        expected = streamed_text(question, COUNT)
        assert reply["shown"]["body"] == expected, (question, reply["shown"]["body"])
        assert reply["shown"]["com.salon.turn"]["final"] is True, question
        # And the edit the homeserver picks for clients is that same final version.
        served = await _server_shown(person, room_id, reply["event"]["event_id"])
        assert served.get("body") == expected, (question, served.get("body"))
        assert (served.get("com.salon.turn") or {}).get("final") is True, question


async def test_kill_9_while_edits_are_in_flight_leaves_one_complete_reply_each(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    config_path = _write_config(synapse, tmp_path, person, count=COUNT, delay_s=0.15)
    questions: list[str] = []
    partial_at_kill = 0
    room_id = ""
    # Each round kills later into the streams: after 1, 4, then 8 edits of a reply.
    for round_no, edits_needed in enumerate((1, 4, 8)):
        with running(config_path) as process:
            process.wait_ready()
            if not room_id:
                room_id = await person.join(_alias(config_path, synapse.server_name))
            asked = [f"r{round_no}q{j}" for j in range(3)]
            questions += asked
            for question in asked:
                await person.say(room_id, question)
            deadline = time.monotonic() + 20
            while True:
                assert time.monotonic() < deadline, f"round {round_no}: no edits seen"
                replies = await _replies(person, room_id)
                mine = [r for q in asked for r in replies.get(q, [])]
                if any(r["edits"] >= edits_needed for r in mine):
                    break
                await asyncio.sleep(0.05)
            process.kill()
            partial_at_kill += sum(1 for r in mine if not r["shown"]["com.salon.turn"]["final"])

    # The kills really landed mid-stream: some replies showed partial text when killed.
    assert partial_at_kill >= 3, partial_at_kill
    with running(config_path) as process:
        process.wait_ready()
        replies = await _wait_all_closed(person, room_id, tmp_path, questions, timeout=40)
    await _assert_one_final_reply_each(person, room_id, replies, questions)
    rows = _turns(tmp_path)
    # Interrupted turns were run again after a restart (not merely finished before it).
    assert sum(1 for r in rows if r["attempts"] >= 2) >= 3, [dict(r) for r in rows]


async def test_kill_9_right_after_the_final_edit_keeps_the_final_text_newest(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    """The process dies right after the homeserver took the final edit, before the
    ledger closed the turn: the re-run must re-send that stored text (same transaction
    id), never stream anew, or its in-between edits land after the final one."""
    calls = tmp_path / "calls.txt"
    config_path = _write_config(
        synapse,
        tmp_path,
        person,
        count=COUNT,
        delay_s=0.1,
        # A re-run that streamed again would be slower and send more edits than the
        # crashed run did: new events, newer than the final edit.
        rerun_delay_s=0.4,
        calls_file=str(calls),
        die_after_final="die-",
        died_file=str(tmp_path / "died.txt"),
    )
    questions = ["die-0", "die-1"]
    room_id = ""
    for question in questions:
        with running(config_path) as process:
            process.wait_ready()
            room_id = room_id or await person.join(_alias(config_path, synapse.server_name))
            asked = await person.say(room_id, question)
            # It kills itself once that reply's final edit was sent.
            assert await asyncio.to_thread(process.proc.wait, 30) == -signal.SIGKILL
        (row,) = [r for r in _turns(tmp_path) if r["event_id"] == asked]
        assert row["state"] == "running" and row["output"], dict(row)  # died unclosed
    with running(config_path) as process:
        process.wait_ready()
        replies = await _wait_all_closed(person, room_id, tmp_path, questions, timeout=30)
    await _assert_one_final_reply_each(person, room_id, replies, questions)
    # The backend ran once per question: the re-run sent the stored outcome.
    ran = calls.read_text().splitlines()
    assert sorted(ran) == questions, ran
    rows = {r["event_id"]: r for r in _turns(tmp_path)}
    assert sorted(r["attempts"] for r in rows.values()) == [2, 2], [dict(r) for r in rows.values()]
