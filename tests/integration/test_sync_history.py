"""Gap-free sync, the join-time history rule and invitations, on the real Synapse.

- Messages sent while the gateway is down are all answered once after it is back,
  even when there are more of them than one /sync timeline holds, and however
  many /messages pages the gap takes (there used to be a cap of 20).
- An agent invited into a room with history answers none of it, only what follows.
- An invitation whose join fails does not hold up the identity's sync token.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mautrix.api import Method
from mautrix.api import Path as MxPath
from mautrix.types import UserID

from salon.app.gateway import Gateway
from salon.metrics import EVENTS_DROPPED, SYNC_BACKFILL_PAGES, SYNC_BACKFILLED
from salon.store import Store
from salon.store.invites import InviteState

from .conftest import Person, salon_config


async def full_history(person: Person, room_id: str) -> list[dict[str, Any]]:
    """Every event of the room the person can see, oldest first (all pages)."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query = {"dir": "b", "limit": "100", **({"from": token} if token else {})}
        data = await person.api.api.request(
            Method.GET, MxPath.v3.rooms[room_id].messages, query_params=query
        )
        events += data.get("chunk") or []
        token = data.get("end")
        if not data.get("chunk") or not token:
            return list(reversed(events))


def reply_counts(events: list[dict[str, Any]], sender: str) -> Counter[str]:
    """How many replies (edits excluded) ``sender`` made to each event."""
    counts: Counter[str] = Counter()
    for event in events:
        content = event.get("content") or {}
        rel = content.get("m.relates_to") or {}
        if event.get("sender") != sender or rel.get("rel_type") == "m.replace":
            continue
        target = (rel.get("m.in_reply_to") or {}).get("event_id")
        if target:
            counts[target] += 1
    return counts


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


def dropped(reason: str) -> float:
    return EVENTS_DROPPED.labels(reason=reason)._value.get()


async def test_messages_sent_while_down_are_all_answered_once(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    first = await gateways(config, invite=[person.user_id])
    room_id = await person.join(
        f"#{config.agent_room_alias_localpart('echo')}:{synapse.server_name}"
    )
    echo = config.agent_user_id("echo", synapse.server_name)
    warm = await person.say(room_id, "before the outage")
    await person.wait_reply(room_id, warm)
    await first.stop()

    # More than one /sync timeline (100 events) holds.
    asked = [await person.say(room_id, f"question {i}") for i in range(150)]
    backfilled = SYNC_BACKFILLED._value.get()
    await gateways(config)

    async def all_answered() -> bool:
        counts = reply_counts(await full_history(person, room_id), echo)
        return all(counts[q] for q in asked)

    await eventually(all_answered, 120, "150 answers")
    counts = reply_counts(await full_history(person, room_id), echo)
    assert [counts[q] for q in asked] == [1] * 150
    assert counts[warm] == 1
    assert SYNC_BACKFILLED._value.get() >= backfilled + 50


async def test_a_gap_of_more_than_twenty_pages_is_recovered_completely(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    # Small pages keep it quick: 5 events a /sync timeline, 5 a /messages page.
    config = salon_config(synapse, tmp_path, sync={"timeline_limit": 5, "backfill_page_size": 5})
    first = await gateways(config, invite=[person.user_id])
    room_id = await person.join(
        f"#{config.agent_room_alias_localpart('echo')}:{synapse.server_name}"
    )
    echo = config.agent_user_id("echo", synapse.server_name)
    warm = await person.say(room_id, "before the outage")
    await person.wait_reply(room_id, warm)
    await first.stop()
    store = await Store.open(config.store.url)
    token_before = await store.identities.get_sync_token(echo)
    await store.close()

    # 5 in the timeline and 130 before it: 26 pages, beyond the old cap of 20.
    asked = [await person.say(room_id, f"question {i}") for i in range(135)]
    pages = SYNC_BACKFILL_PAGES._value.get()
    gateway = await gateways(config)
    assert gateway.store is not None
    store = gateway.store

    # The token moves only once everything before it was admitted: then all are in.
    async def token_moved() -> bool:
        return await store.identities.get_sync_token(echo) != token_before

    await eventually(token_moved, 60, "the echo's sync token to move")
    missing = [i for i, e in enumerate(asked) if await store.inbox.get(e) is None]
    assert missing == []

    async def all_answered() -> bool:
        counts = reply_counts(await full_history(person, room_id), echo)
        return all(counts[q] for q in asked)

    await eventually(all_answered, 120, "135 answers")
    # Every message answered exactly once, the warm one not again.
    counts = reply_counts(await full_history(person, room_id), echo)
    assert [counts[q] for q in asked] == [1] * 135
    assert counts[warm] == 1
    assert SYNC_BACKFILL_PAGES._value.get() >= pages + 26


async def test_invited_agent_answers_nothing_from_before_its_join(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    gateway = await gateways(config, invite=[person.user_id])
    echo = config.agent_user_id("echo", synapse.server_name)
    room_id = str(await person.api.create_room(name="existing room"))
    earlier = [await person.say(room_id, f"earlier {i}") for i in range(30)]
    before = dropped("before_join")
    await person.api.invite_user(room_id, UserID(echo))
    assert gateway.store is not None
    store = gateway.store

    async def joined() -> bool:
        return await store.identities.joined_at(echo, room_id) is not None

    await eventually(joined, 30, "the agent's join")
    # All 30 messages, and the room's creation before them, were never delivered.
    await eventually(lambda: _at_least(dropped("before_join"), before + 30), 10, "drops")
    asked = await person.say(room_id, "and now?")
    reply = await person.wait_reply(room_id, asked)
    assert reply["sender"] == echo and reply["content"]["body"] == "and now?"
    counts = reply_counts(await full_history(person, room_id), echo)
    assert [counts[e] for e in earlier] == [0] * 30
    assert [await store.inbox.get(e) for e in earlier] == [None] * 30  # never admitted


async def test_failing_invitation_does_not_hold_the_sync_token(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path)
    first = await gateways(config, invite=[person.user_id])
    echo_room = await person.join(
        f"#{config.agent_room_alias_localpart('echo')}:{synapse.server_name}"
    )
    echo = config.agent_user_id("echo", synapse.server_name)
    await first.stop()
    store = await Store.open(config.store.url)
    token_before = await store.identities.get_sync_token(echo)
    await store.close()

    # An invitation to a room nobody is left in: Synapse cannot join it (404).
    room_id = str(await person.api.create_room(name="soon empty"))
    await person.api.invite_user(room_id, UserID(echo))
    await person.api.leave_room(room_id)

    gateway = await gateways(config, ready_timeout_s=30)
    assert gateway.store is not None
    store = gateway.store

    async def closed() -> bool:
        record = await store.invites.get(echo, room_id)
        return record is not None and record.state is not InviteState.PENDING

    await eventually(closed, 30, "the invitation's outcome")
    record = await store.invites.get(echo, room_id)
    assert record is not None and record.state is InviteState.FAILED
    assert record.reason is not None and "join" in record.reason
    asked = await person.say(echo_room, "still there?")
    assert (await person.wait_reply(echo_room, asked))["content"]["body"] == "still there?"
    assert await store.identities.get_sync_token(echo) != token_before
    status = {s.identity: s for s in gateway.loop_status()}
    assert status[echo].restarts == 0


async def _at_least(value: float, wanted: float) -> bool:
    return value >= wanted
