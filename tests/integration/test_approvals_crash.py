"""A pending approval survives kill -9: the ✅ given after the restart runs the call once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml

from salon.store import Store
from salon.store.approvals import ApprovalRecord

from .conftest import Person
from .test_agent_runtime import _final_text
from .test_approvals import agents, edits_of
from .test_crash import _write_config, running


async def _row(db: Path, ready: Any, timeout: float = 30) -> ApprovalRecord:
    """The only approval, once ``ready(row)``, read from the store file as it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = await Store.open(f"sqlite:///{db}")
        try:
            rows = await store.approvals.list()
        finally:
            await store.close()
        if rows and ready(rows[0]):
            assert len(rows) == 1, rows
            return rows[0]
        await asyncio.sleep(0.3)
    raise AssertionError("no approval in the expected state")


async def test_a_pending_approval_survives_kill_9_and_runs_the_call_once(
    synapse: Any, tmp_path: Path, person: Person
) -> None:
    config_path = _write_config(synapse, tmp_path, person, agents())
    data = yaml.safe_load(config_path.read_text())  # the person is an admin (invited)
    pattern = data["naming"]["agent_room_alias"]
    alias = f"#{pattern.replace('{id}', 'alpha')}:{synapse.server_name}"
    db = Path(data["store"]["url"].removeprefix("sqlite:///"))

    with running(config_path) as first:
        first.wait_ready()
        room = await person.join(alias)
        asked = await person.say(room, "hello")
        waiting = await _row(db, lambda r: r.pending and r.request_event_id)
        first.kill()

    # While the gateway is down: the ✅ waits in the room for the next start.
    assert waiting.request_event_id is not None
    await person.react(room, waiting.request_event_id, "✅")
    with running(config_path) as second:
        second.wait_ready()
        assert await _final_text(person, room, asked, timeout=40) == (
            "alpha got: beta says task: hello"
        )
        decided = await _row(db, lambda r: not r.pending)
    assert decided.id == waiting.id and decided.state == "approved"
    assert decided.decided_by == person.user_id
    # One request message (the re-run found it), edited to show the outcome; one task.
    history = await person.history(room, limit=200)
    requests = [
        e
        for e in history
        if (e["content"].get("com.salon.turn") or {}).get("approval") == waiting.id
        and (e["content"].get("m.relates_to") or {}).get("rel_type") != "m.replace"
    ]
    assert len(requests) == 1
    assert any("Approved by" in b for b in await edits_of(person, room, waiting.request_event_id))
    store = await Store.open(f"sqlite:///{db}")
    try:
        delegations = await store.delegations.recent(10)
    finally:
        await store.close()
    assert len([d for d in delegations if d.direction == "out"]) == 1
