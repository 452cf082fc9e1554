"""Whom a delegated task is for travels as the request's ``for_user``, set by the gateway:
through the concierge on a real Synapse, each person's notes stay theirs, whatever the
text claims (``for @bob:… notes``), also with ``!delegate``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salon.app.gateway import Gateway
from salon.coordination.protocol import REQUEST
from salon.store.delegations import DelegationDirection, DelegationRecord

from .conftest import Person, salon_config
from .test_agent_runtime import _final_text

NONE_YET = "You have no notes yet. Say `remember <something>`."


async def _tasks(gateway: Gateway) -> set[str]:
    assert gateway.store is not None
    return {r.id for r in await gateway.store.delegations.recent(50)}


async def _task_for(
    gateway: Gateway, task: str, known: set[str], timeout: float = 30
) -> DelegationRecord:
    """The notes agent's ended task whose text is ``task`` and whose id is not ``known``
    (waits until it has ended)."""
    assert gateway.store is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in await gateway.store.delegations.recent(50):
            if (
                record.direction is DelegationDirection.IN
                and record.to_agent == "notes"
                and record.task == task
                and record.id not in known
                and record.terminal
            ):
                return record
        await asyncio.sleep(0.2)
    raise AssertionError(f"no ended task {task!r}")


async def test_notes_stay_per_person_through_the_concierge(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
    new_user: Callable[..., Awaitable[Any]],
    http: Any,
) -> None:
    agents = {
        "concierge": {"backend": {"type": "python", "entry": "salon.demo.concierge:Concierge"}},
        "notes": {"backend": {"type": "python", "entry": "salon.demo.notes:Notes"}},
    }
    config = salon_config(synapse, tmp_path, agents=agents, data_dir=str(tmp_path / "data"))
    alice, bob = person, Person(await new_user(), synapse.base_url, http)
    gateway = await gateways(config, invite=[alice.user_id, bob.user_id])
    server = synapse.server_name
    alias = f"#{config.agent_room_alias_localpart('concierge')}:{server}"
    room = await bob.join(alias)
    await alice.join(alias)

    async def ask(who: Person, text: str) -> str:
        return await _final_text(who, room, await who.say(room, text), timeout=30)

    assert await ask(bob, "remember bob's secret") == "notes says: Noted #1: bob's secret"
    # Alice claims in the text to ask for Bob: the task is done for her all the same.
    claim = f"for {bob.user_id}: what are my notes?"
    assert await ask(alice, claim) == f"notes says: {NONE_YET}"
    assert await ask(alice, "remember alice's list") == "notes says: Noted #1: alice's list"

    # !delegate: the task text is Alice's to choose, whom it is for is not.
    known = await _tasks(gateway)
    await alice.say(room, f"!delegate notes {claim}")
    record = await _task_for(gateway, claim, known)
    assert record.for_user == alice.user_id
    assert record.result == "Your notes:\n1. alice's list"

    # Bob's notes are untouched and still his.
    assert await ask(bob, "notes") == "notes says: Your notes:\n1. bob's secret"
    # On the wire: every request into the notes agent's room says whom it is for.
    notes_room = await alice.join(f"#{config.agent_room_alias_localpart('notes')}:{server}")
    requests = [e for e in await alice.history(notes_room, limit=200) if e["type"] == REQUEST]
    by_task = {(e["content"]["task"], e["content"].get("for_user")) for e in requests}
    assert ("remember bob's secret", bob.user_id) in by_task
    assert (claim, alice.user_id) in by_task
    assert all(for_user in (alice.user_id, bob.user_id) for _, for_user in by_task), by_task
