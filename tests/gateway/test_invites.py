"""The invite joiner: durable, retrying per invitation, outside the sync loop.

A fake stands at the MatrixAPI boundary (``join`` outcomes scripted per room);
the store is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from salon._exceptions import ForbiddenError, MatrixConnectionError, NotFoundError
from salon.gateway.invites import InviteJoiner
from salon.ids import RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent, Invite
from salon.matrix.sync import ClientSyncSource, SyncSettings
from salon.metrics import EVENTS_DROPPED
from salon.store import Store
from salon.store.invites import InviteRecord, InviteState
from salon.supervisor import Backoff, Supervisor

AGENT = UserId("@salon_echo:x")
ALICE = UserId("@alice:x")
MALLORY = UserId("@mallory:evil")
FAST = Backoff(initial_s=0.05, max_s=0.05, jitter=0)


class FakeAgent:
    """``join`` and ``leave`` fail with the queued errors of a room, then succeed."""

    user_id = AGENT

    def __init__(self, failures: dict[str, list[Exception]] | None = None) -> None:
        self.failures = failures or {}
        self.joins: list[str] = []
        self.leaves: list[str] = []
        self.sync_script: list[dict[str, Any]] = []
        self.since_seen: list[str | None] = []
        self.drained = asyncio.Event()

    async def join(self, room: str, via: Any = ()) -> RoomId:
        self.joins.append(room)
        self._fail(room)
        return RoomId(room)

    async def leave(self, room: str) -> None:
        self.leaves.append(room)
        self._fail(room)

    def _fail(self, room: str) -> None:
        queued = self.failures.get(room) or []
        if queued:
            error = queued[0]
            if len(queued) > 1 or not getattr(error, "sticky", False):
                queued.pop(0)
            raise error

    async def sync(
        self, since: str | None, *, timeout_ms: int, filter_id: str | None = None
    ) -> dict[str, Any]:
        self.since_seen.append(since)
        if not self.sync_script:
            self.drained.set()
            await asyncio.Event().wait()
        return self.sync_script.pop(0)


def sticky(error: Exception) -> Exception:
    """Mark the last queued error of a room to repeat forever."""
    error.sticky = True  # type: ignore[attr-defined]
    return error


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    yield store
    await store.close()


def joiner_for(store: Store, agent: FakeAgent, joined: list[RoomId] | None = None) -> InviteJoiner:
    return InviteJoiner(
        store,
        {AGENT: cast(MatrixAPI, agent)},
        allowed=lambda sender: sender.endswith(":x"),
        on_joined=None if joined is None else joined.append,
        backoff=FAST,
    )


async def settled(
    store: Store, room: str, done: Callable[[InviteRecord], bool], timeout: float = 5
) -> InviteRecord:
    """The stored invitation once ``done`` holds for it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        record = await store.invites.get(AGENT, room)
        if record is not None and done(record):
            return record
        assert asyncio.get_running_loop().time() < deadline, f"invite {room}: {record}"
        await asyncio.sleep(0.02)


async def test_transient_failure_is_retried_later_and_joins(store: Store) -> None:
    agent = FakeAgent({"!a:x": [MatrixConnectionError("down"), MatrixConnectionError("down")]})
    joined: list[RoomId] = []
    joiner = joiner_for(store, agent, joined)
    supervisor = Supervisor()
    supervisor.spawn("invites", joiner.run)
    await joiner.record(Invite(RoomId("!a:x"), ALICE, AGENT))
    record = await settled(store, "!a:x", lambda r: r.state is InviteState.JOINED)
    await supervisor.stop()
    assert record.attempts == 3 and record.reason == "joined"
    assert agent.joins == ["!a:x"] * 3
    assert joined == ["!a:x"]
    assert supervisor.handles["invites"].restarts == 0  # failures are per invite, not the loop


async def test_one_failing_room_does_not_hold_up_the_others(store: Store) -> None:
    agent = FakeAgent({"!bad:x": [sticky(MatrixConnectionError("down"))]})
    joiner = joiner_for(store, agent)
    supervisor = Supervisor()
    supervisor.spawn("invites", joiner.run)
    await joiner.record(Invite(RoomId("!bad:x"), ALICE, AGENT))
    await joiner.record(Invite(RoomId("!good:x"), ALICE, AGENT))
    await settled(store, "!good:x", lambda r: r.state is InviteState.JOINED)
    bad = await settled(store, "!bad:x", lambda r: r.attempts >= 2)
    await supervisor.stop()
    assert bad.state is InviteState.PENDING
    assert bad.reason == "down"


@pytest.mark.parametrize(
    "error",
    [
        ForbiddenError("join: M_FORBIDDEN: banned", http_status=403, errcode="M_FORBIDDEN"),
        NotFoundError("join: M_NOT_FOUND: no room", http_status=404, errcode="M_NOT_FOUND"),
    ],
)
async def test_permanent_failure_is_stored_with_its_reason(store: Store, error: Exception) -> None:
    agent = FakeAgent({"!gone:x": [sticky(error)]})
    joiner = joiner_for(store, agent)
    supervisor = Supervisor()
    supervisor.spawn("invites", joiner.run)
    await joiner.record(Invite(RoomId("!gone:x"), ALICE, AGENT))
    # A second invitation is recorded after the first failed: it is still handled.
    await settled(store, "!gone:x", lambda r: r.state is not InviteState.PENDING)
    await joiner.record(Invite(RoomId("!next:x"), ALICE, AGENT))
    await settled(store, "!next:x", lambda r: r.state is InviteState.JOINED)
    await supervisor.stop()
    record = await store.invites.get(AGENT, "!gone:x")
    assert record is not None and record.state is InviteState.FAILED
    assert record.reason == str(error)
    assert agent.joins.count("!gone:x") == 1  # never retried


def refused_count() -> float:
    return EVENTS_DROPPED.labels(reason="invite_unauthorised")._value.get()


async def test_unauthorised_sender_is_declined_and_counted(store: Store) -> None:
    agent = FakeAgent()
    joiner = joiner_for(store, agent)
    before = refused_count()
    supervisor = Supervisor()
    supervisor.spawn("invites", joiner.run)
    await joiner.record(Invite(RoomId("!trap:evil"), MALLORY, AGENT))
    record = await settled(store, "!trap:evil", lambda r: r.state is not InviteState.PENDING)
    await supervisor.stop()
    assert record.state is InviteState.REFUSED
    assert record.reason == "unauthorised"
    assert refused_count() == before + 1
    assert agent.joins == []
    assert agent.leaves == ["!trap:evil"]  # rejected, not left lingering


async def test_declining_retries_an_unreachable_homeserver(store: Store) -> None:
    agent = FakeAgent({"!trap:evil": [MatrixConnectionError("down"), MatrixConnectionError("x")]})
    joiner = joiner_for(store, agent)
    before = refused_count()
    supervisor = Supervisor()
    supervisor.spawn("invites", joiner.run)
    await joiner.record(Invite(RoomId("!trap:evil"), MALLORY, AGENT))
    record = await settled(store, "!trap:evil", lambda r: r.state is not InviteState.PENDING)
    await supervisor.stop()
    assert (record.state, record.reason) == (InviteState.REFUSED, "unauthorised")
    assert agent.leaves == ["!trap:evil"] * 3
    assert refused_count() == before + 1  # counted once, not per try


async def test_an_invitation_gone_before_it_is_declined_is_still_refused(store: Store) -> None:
    agent = FakeAgent({"!trap:evil": [ForbiddenError("not invited", http_status=403)]})
    joiner = joiner_for(store, agent)
    supervisor = Supervisor()
    supervisor.spawn("invites", joiner.run)
    await joiner.record(Invite(RoomId("!trap:evil"), MALLORY, AGENT))
    record = await settled(store, "!trap:evil", lambda r: r.state is not InviteState.PENDING)
    await supervisor.stop()
    assert (record.state, record.reason) == (InviteState.REFUSED, "unauthorised")
    assert agent.leaves == ["!trap:evil"]


async def test_pending_invitations_survive_a_restart(store: Store) -> None:
    # Recorded by one gateway run that stopped before joining…
    await joiner_for(store, FakeAgent()).record(Invite(RoomId("!r:x"), ALICE, AGENT))
    # …joined by the next.
    agent = FakeAgent()
    supervisor = Supervisor()
    supervisor.spawn("invites", joiner_for(store, agent).run)
    await settled(store, "!r:x", lambda r: r.state is InviteState.JOINED)
    await supervisor.stop()
    assert agent.joins == ["!r:x"]


async def test_sync_token_advances_while_the_join_keeps_failing(store: Store) -> None:
    """The sync loop only records; the join fails in the joiner, the token moves on."""
    agent = FakeAgent({"!r:x": [sticky(MatrixConnectionError("down"))]})
    joiner = joiner_for(store, agent)
    await store.identities.ensure(AGENT)
    await store.identities.set_sync_token(AGENT, "s1")
    member = {
        "type": "m.room.member",
        "state_key": AGENT,
        "sender": ALICE,
        "content": {"membership": "invite"},
    }
    invite = {"!r:x": {"invite_state": {"events": [member]}}}
    agent.sync_script = [
        {"next_batch": "s2", "rooms": {"invite": invite}},
        {"next_batch": "s3"},
    ]

    class Sink:
        async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
            return None

        async def invited(self, invite: Invite) -> None:
            await joiner.record(invite)

    supervisor = Supervisor()
    supervisor.spawn("invites", joiner.run)
    source = ClientSyncSource(
        [cast(MatrixAPI, agent)], store.identities, settings=SyncSettings(startup_jitter_s=0)
    )
    await source.start(Sink())
    await asyncio.wait_for(agent.drained.wait(), 5)
    retried = await settled(store, "!r:x", lambda r: r.attempts >= 2)
    await source.stop()
    await supervisor.stop()
    assert agent.since_seen == ["s1", "s2", "s3"]
    assert await store.identities.get_sync_token(AGENT) == "s3"
    assert retried.state is InviteState.PENDING


async def test_record_is_idempotent_and_a_new_invitation_reopens(store: Store) -> None:
    await store.invites.record(AGENT, "!r:x", ALICE)
    await store.invites.record(AGENT, "!r:x", ALICE)
    assert [r.room_id for r in await store.invites.due(now=2**62)] == ["!r:x"]
    await store.invites.close(AGENT, "!r:x", InviteState.JOINED, "joined")
    assert await store.invites.due(now=2**62) == []
    # Left, then invited back: a new invitation to join.
    await store.invites.record(AGENT, "!r:x", ALICE)
    record = await store.invites.get(AGENT, "!r:x")
    assert record is not None and record.state is InviteState.PENDING and record.attempts == 0


async def test_an_invitation_to_a_room_the_identity_is_in_is_closed_without_a_join(
    store: Store,
) -> None:
    """Appservice mode knows who is in which room: the lobby invitations the start
    itself joined are not joined again (one by one in the homeserver, ahead of replies)."""
    agent = FakeAgent()
    joiner = joiner_for(store, agent)
    joiner.already_in = lambda user, room: room == "!lobby:x"
    supervisor = Supervisor()
    supervisor.spawn("invites", joiner.run)
    await joiner.record(Invite(RoomId("!lobby:x"), ALICE, AGENT))
    await joiner.record(Invite(RoomId("!new:x"), ALICE, AGENT))
    lobby = await settled(store, "!lobby:x", lambda r: r.state is InviteState.JOINED)
    await settled(store, "!new:x", lambda r: r.state is InviteState.JOINED)
    await supervisor.stop()
    assert lobby.reason == "already joined"
    assert agent.joins == ["!new:x"]
