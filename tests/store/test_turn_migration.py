"""Upgrading a store whose turns were left open by a version that kept no turn spec."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from salon.store.db import Database, migrations
from salon.turns.spec import TurnKind, TurnSpec


async def test_open_turns_of_an_old_store_get_a_spec_and_can_resume(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for number, _, sql in migrations("sqlite"):
        if number < 5:
            conn.executescript(sql)
    conn.execute("PRAGMA user_version=4")
    event = {
        "event_id": "$e",
        "content": {"body": "hi there", "m.relates_to": {"rel_type": "m.thread", "event_id": "$t"}},
    }
    conn.execute(
        "INSERT INTO inbox (event_id, room_id, sender, event_type, event_json, origin_ts,"
        " received_by, received_at, state)"
        " VALUES ('$e', '!r', '@a:x', 'm.room.message', ?, 1, '@b:x', 1, 'done')",
        (json.dumps(event),),
    )
    conn.execute(
        "INSERT INTO turns (event_id, agent_id, room_id, state, attempts, updated_at)"
        " VALUES ('$e', 'echo', '!r', 'running', 1, 1), ('$old', 'echo', '!r', 'replied', 1, 1)"
    )
    conn.commit()
    conn.close()

    db = await Database.open(f"sqlite:///{path}")
    try:
        rows = await db.fetchall("SELECT event_id, spec FROM turns ORDER BY event_id")
    finally:
        await db.close()
    specs = {r["event_id"]: r["spec"] for r in rows}
    assert specs["$old"] is None  # closed turns need none
    spec = TurnSpec.from_json(specs["$e"])
    assert (spec.kind, spec.agent_id, spec.room_id, spec.sender, spec.text) == (
        TurnKind.MESSAGE,
        "echo",
        "!r",
        "@a:x",
        "hi there",
    )
    assert spec.session_key == "agent:echo:matrix:!r:thread:$t"
    assert (spec.reply_to.event_id, spec.reply_to.thread_root) == ("$e", "$t")
