"""A person's OK in the room before an agent's tool call (`delegate`) runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salon.app.gateway import Gateway
from salon.store import Store
from salon.store.approvals import ApprovalRecord

from .conftest import Person, salon_config
from .modes import Deployment
from .nio_person import NioPerson, open_dm
from .test_agent_runtime import _final_text

PLUGINS = "tests.integration.plugins"


def agents() -> dict[str, Any]:
    return {
        "alpha": {
            "backend": {
                "type": "python",
                "entry": f"{PLUGINS}:delegating",
                "options": {"to": "beta"},
            },
            "approve": ["delegate"],
        },
        "beta": {"backend": {"type": "echo", "prefix": "beta says "}},
    }


async def wait_request(store: Store, timeout: float = 20) -> ApprovalRecord:
    """The pending approval, once its request message is in the room."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in await store.approvals.list():
            if record.pending and record.request_event_id:
                return record
        await asyncio.sleep(0.2)
    raise AssertionError("no approval request")


async def wait_row(
    store: Store, aid: str, done: Callable[[ApprovalRecord], bool], timeout: float = 20
) -> ApprovalRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = await store.approvals.get(aid)
        if record is not None and done(record):
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"approval {aid}: {await store.approvals.get(aid)}")


async def edits_of(person: Person, room_id: str, event_id: str) -> list[str]:
    found = []
    for event in await person.history(room_id, limit=200):
        content = event.get("content") or {}
        rel = content.get("m.relates_to") or {}
        if rel.get("rel_type") == "m.replace" and rel.get("event_id") == event_id:
            found.append(str(content["m.new_content"]["body"]))
    return found


async def _start(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    invite: list[str],
) -> tuple[Gateway, str]:
    config = salon_config(synapse, tmp_path, agents=agents())
    gateway = await gateways(config, invite=invite)
    assert gateway.store is not None
    return gateway, f"#{config.agent_room_alias_localpart('alpha')}:{synapse.server_name}"


async def test_requester_approves_by_reaction_and_a_strangers_reaction_changes_nothing(
    deployment: Deployment,
    gateways: Callable[..., Awaitable[Gateway]],
    http: Any,
) -> None:
    # In both homeserver modes: a /sync per identity, and an appservice's pushed events.
    person = await deployment.person(http)
    stranger = await deployment.person(http)
    config = deployment.config(agents=agents())
    gateway = await gateways(
        config, invite=[person.user_id, stranger.user_id], secrets=deployment.secrets
    )
    alias = f"#{config.agent_room_alias_localpart('alpha')}:{deployment.hs.server_name}"
    store = gateway.store
    assert store is not None
    room = await person.join(alias)
    await stranger.join(alias)
    asked = await person.say(room, "hello")

    record = await wait_request(store)
    assert record.tool == "delegate" and record.for_user == person.user_id
    assert record.arguments == {"agent": "beta", "task": "task: hello"}
    assert record.request_event_id is not None
    request = [e for e in await person.history(room) if e["event_id"] == record.request_event_id]
    assert (
        "delegate" in request[0]["content"]["body"] and record.id in request[0]["content"]["body"]
    )

    # A stranger's ✅ is kept with its reason; the call still waits.
    await stranger.react(room, record.request_event_id, "✅")
    ignored = await wait_row(store, record.id, lambda r: bool(r.ignored))
    assert ignored.pending
    assert ignored.ignored[0]["by"] == stranger.user_id
    assert "not the person the turn works for" in ignored.ignored[0]["why"]
    assert not await store.delegations.recent(10)  # nothing was delegated

    await person.react(room, record.request_event_id, "✅️")  # with a variation selector
    assert await _final_text(person, room, asked) == "alpha got: beta says task: hello"
    decided = await store.approvals.get(record.id)
    assert decided is not None and decided.state == "approved"
    assert decided.decided_by == person.user_id
    assert any(
        "Approved by" in body for body in await edits_of(person, room, record.request_event_id)
    )


async def test_a_refusal_tells_the_agent_and_nothing_runs(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
) -> None:
    gateway, alias = await _start(synapse, tmp_path, gateways, [person.user_id])
    store = gateway.store
    assert store is not None
    room = await person.join(alias)
    asked = await person.say(room, "hello")
    record = await wait_request(store)
    assert record.request_event_id is not None
    await person.react(room, record.request_event_id, "❌")
    text = await _final_text(person, room, asked)
    assert text.startswith("alpha got: [DENIED] delegate was not run: denied by ")
    decided = await store.approvals.get(record.id)
    assert decided is not None and decided.state == "denied"
    assert not await store.delegations.recent(10)
    assert any(
        "Refused by" in body for body in await edits_of(person, room, record.request_event_id)
    )

    # A second message, answered by `!approve` as a reply to its request.
    asked = await person.say(room, "again")
    second = await wait_request(store)
    assert second.id != record.id and second.request_event_id is not None
    await person.say(
        room,
        "!approve",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": second.request_event_id}}},
    )
    assert await _final_text(person, room, asked) == "alpha got: beta says task: again"


async def test_in_an_encrypted_room_the_request_is_encrypted_and_a_reaction_approves(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    nio_person: NioPerson,
) -> None:
    config = salon_config(synapse, tmp_path, agents=agents(), sync={"timeout_ms": 1000})
    gateway = await gateways(config)
    store = gateway.store
    assert store is not None
    alpha = str(config.agent_user_id("alpha", synapse.server_name))
    room = await open_dm(nio_person, alpha)
    await nio_person.say(room, "hello in secret")

    def request() -> Any:
        for event in nio_person.replies_from(alpha):
            if (event.source["content"].get("com.salon.turn") or {}).get("approval"):
                return event
        return None

    await nio_person.until(lambda: request() is not None, "the approval request")
    asked = request()
    assert asked.decrypted  # it came encrypted, and nio opened it
    record = await wait_request(store)
    assert record.request_event_id == asked.event_id
    await nio_person.client.room_send(
        room,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": asked.event_id, "key": "✅"}},
        ignore_unverified_devices=True,
    )
    await nio_person.until(
        lambda: any(
            e.body == "alpha got: beta says task: hello in secret"
            for e in nio_person.replies_from(alpha)
        ),
        "the answer once approved",
    )
    decided = await store.approvals.get(record.id)
    assert decided is not None and decided.state == "approved"
    assert decided.decided_by == nio_person.client.user_id
