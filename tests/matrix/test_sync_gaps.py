"""Gap-free sync with a fake at the MatrixAPI boundary and the real store.

A ``limited`` timeline is backfilled with /messages down to the room's mark (or
the identity's own join), however many pages that takes, a page at a time and
oldest first; events older than the identity's join are never delivered; the
token advances whatever an invitation does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from salon._exceptions import ForbiddenError, MatrixConnectionError
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent, Invite
from salon.matrix.sync import ClientSyncSource, SyncSettings
from salon.metrics import EVENTS_DROPPED, SYNC_BACKFILL_PAGES
from salon.store import Store
from salon.supervisor import Backoff

ME = UserId("@salon_echo:x")
ROOM = "!room:x"


def msg(n: int, ts: int | None = None, sender: str = "@alice:x") -> dict[str, Any]:
    return {
        "event_id": f"$m{n}",
        "sender": sender,
        "type": "m.room.message",
        "origin_server_ts": 1_000 + n if ts is None else ts,
        "content": {"msgtype": "m.text", "body": f"message {n}"},
    }


def join(n: int, prev: str | None = "invite") -> dict[str, Any]:
    event = {
        "event_id": f"$join{n}",
        "sender": ME,
        "type": "m.room.member",
        "state_key": ME,
        "origin_server_ts": 1_000 + n,
        "content": {"membership": "join"},
    }
    if prev is not None:
        event["unsigned"] = {"prev_content": {"membership": prev}}
    return event


class FakeHomeserver:
    """One room's history; /sync answers are scripted, /messages pages through history."""

    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.history = history
        self.script: list[dict[str, Any] | BaseException] = []
        self.since_seen: list[str | None] = []
        self.pages: list[str] = []
        self.messages_errors: list[BaseException] = []  # raised by the next calls
        self.drained = asyncio.Event()

    def sync_limited(
        self, last: int, next_batch: str, *, state: Sequence[Any] = (), limited: bool = True
    ) -> None:
        """Queue a /sync whose timeline holds the newest ``last`` events."""
        start = len(self.history) - last
        room = {
            "timeline": {
                "events": self.history[start:],
                "limited": limited and start > 0,
                "prev_batch": f"t{start}",
            },
            "state": {"events": list(state)},
        }
        self.script.append({"next_batch": next_batch, "rooms": {"join": {ROOM: room}}})

    # --- the MatrixAPI surface the sync source uses ---------------------------

    user_id = ME

    async def sync(
        self, since: str | None, *, timeout_ms: int, filter_id: str | None = None
    ) -> dict[str, Any]:
        self.since_seen.append(since)
        if not self.script:
            self.drained.set()
            await asyncio.Event().wait()
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def messages(
        self, room_id: str, *, limit: int = 20, direction: str = "b", since: str | None = None
    ) -> dict[str, Any]:
        assert room_id == ROOM and direction == "b" and since is not None
        self.pages.append(since)
        if self.messages_errors:
            raise self.messages_errors.pop(0)
        end = int(since[1:])
        start = max(0, end - limit)
        page: dict[str, Any] = {"chunk": list(reversed(self.history[start:end]))}
        if start > 0:
            page["end"] = f"t{start}"  # omitted at the room's start, as Synapse does
        return page


class Sink:
    def __init__(self, invite_error: BaseException | None = None) -> None:
        self.batches: list[list[InboundEvent]] = []
        self.invites: list[Invite] = []
        self.invite_error = invite_error

    async def admit(self, identity: UserId, events: Sequence[InboundEvent]) -> None:
        self.batches.append(list(events))

    async def invited(self, invite: Invite) -> None:
        self.invites.append(invite)
        if self.invite_error is not None:
            raise self.invite_error

    def ids(self) -> list[str]:
        return [e.event_id for batch in self.batches for e in batch]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    await store.identities.ensure(ME)
    yield store
    await store.close()


async def run(store: Store, hs: FakeHomeserver, sink: Sink | None = None, **kwargs: Any) -> Sink:
    """Run the sync source until the script is used up."""
    sink = sink or Sink()
    source = ClientSyncSource(
        [cast(MatrixAPI, hs)],
        store.identities,
        settings=SyncSettings(startup_jitter_s=0, **kwargs),
        backoff=Backoff(initial_s=0.01, max_s=0.01),
    )
    await source.start(sink)
    await asyncio.wait_for(hs.drained.wait(), 5)
    await source.stop()
    return sink


async def with_mark(store: Store, event: dict[str, Any], token: str = "s1") -> None:
    await store.identities.advance(
        ME, token, {ROOM: (event["event_id"], event["origin_server_ts"])}, {}
    )


def dropped(reason: str) -> float:
    return EVENTS_DROPPED.labels(reason=reason)._value.get()


async def test_limited_timeline_is_backfilled_down_to_the_mark(store: Store) -> None:
    history = [msg(n) for n in range(300)]
    await with_mark(store, history[49])  # delivered before the gateway stopped
    hs = FakeHomeserver(history)
    hs.sync_limited(100, "s2")
    sink = await run(store, hs)
    # Everything after the mark, oldest first: a page an admit call, timeline last.
    assert [len(b) for b in sink.batches] == [50, 100, 100]
    assert sink.ids() == [f"$m{n}" for n in range(50, 300)]
    assert hs.pages == ["t200", "t100"]  # paged back until the mark was met
    assert await store.identities.get_sync_token(ME) == "s2"
    assert (await store.identities.room_marks(ME))[ROOM] == ("$m299", 1_299)


async def test_backfill_stops_at_older_timestamps_when_the_mark_is_gone(store: Store) -> None:
    history = [msg(n) for n in range(150)]
    # The mark event itself is not in the room's history any more (e.g. purged).
    await with_mark(store, {"event_id": "$gone", "origin_server_ts": 1_000 + 30})
    hs = FakeHomeserver(history)
    hs.sync_limited(100, "s2")
    sink = await run(store, hs)
    assert sink.ids() == [f"$m{n}" for n in range(30, 150)]  # same ms as the mark: kept


async def test_a_gap_of_any_length_is_filled_a_page_at_a_time(store: Store) -> None:
    # 900 events before the timeline: 18 pages of 50, beyond the 3 kept from the walk.
    history = [msg(n) for n in range(1_000)]
    await store.identities.set_sync_token(ME, "s1")  # no mark, no join known
    pages_before = SYNC_BACKFILL_PAGES._value.get()
    hs = FakeHomeserver(history)
    hs.sync_limited(100, "s2")
    sink = await run(store, hs, page_size=50, cached_pages=3)
    assert sink.ids() == [f"$m{n}" for n in range(1_000)]  # all, in order, each once
    # One admit per page, oldest page first, then the timeline: never all at once.
    assert [len(b) for b in sink.batches] == [50] * 18 + [100]
    walk = [f"t{900 - 50 * i}" for i in range(18)]
    # The walk back, then the pages not kept read again, oldest first.
    assert hs.pages == walk + walk[3:][::-1]
    assert SYNC_BACKFILL_PAGES._value.get() == pages_before + 18 + 15
    assert await store.identities.get_sync_token(ME) == "s2"
    assert (await store.identities.room_marks(ME))[ROOM] == ("$m999", 1_999)


async def test_a_restart_mid_gap_resumes_after_the_last_page_admitted(store: Store) -> None:
    history = [msg(n) for n in range(400)]
    await with_mark(store, history[9])
    hs = FakeHomeserver(history)
    hs.sync_limited(100, "s2")
    hs.sync_limited(100, "s2")  # asked again from the same token after the failure
    # The walk (t300…t100, t50, t10) is kept whole; the failure hits the second page
    # handed over, so the first (m10…m49) was admitted and marked.
    sink = Sink()
    failing = {"admits": 0}
    admit = sink.admit

    async def flaky(identity: UserId, events: Sequence[InboundEvent]) -> None:
        failing["admits"] += 1
        if failing["admits"] == 2:
            raise MatrixConnectionError("store or homeserver hiccup")
        await admit(identity, events)

    sink.admit = flaky  # type: ignore[method-assign]
    await run(store, hs, sink=sink, page_size=50)
    ids = sink.ids()
    assert ids[:40] == [f"$m{n}" for n in range(10, 50)]
    # After the restart the walk stopped at the new mark: nothing admitted twice.
    assert ids[40:] == [f"$m{n}" for n in range(50, 400)]
    assert hs.since_seen[:3] == ["s1", "s1", "s2"]
    assert await store.identities.get_sync_token(ME) == "s2"


async def test_backfill_stops_at_the_identitys_own_join(store: Store) -> None:
    # Old history, then the agent joins, then a busy room while it was away.
    history = [msg(n) for n in range(40)] + [join(40)] + [msg(n) for n in range(41, 300)]
    await store.identities.set_sync_token(ME, "s1")
    hs = FakeHomeserver(history)
    hs.sync_limited(100, "s2", state=[join(40)])
    sink = await run(store, hs)
    assert sink.ids() == ["$join40"] + [f"$m{n}" for n in range(41, 300)]
    assert await store.identities.room_joins(ME) == {ROOM: 1_040}


async def test_history_before_the_join_is_dropped_and_counted(store: Store) -> None:
    # Invited into a room with 30 earlier messages: the join lands in the timeline.
    history = [msg(n) for n in range(30)] + [join(30)]
    await store.identities.set_sync_token(ME, "s1")
    before = dropped("before_join")
    hs = FakeHomeserver(history)
    hs.sync_limited(31, "s2")
    history.append(msg(31))
    hs.sync_limited(1, "s3", limited=False)
    sink = await run(store, hs)
    assert sink.ids() == ["$join30", "$m31"]
    assert dropped("before_join") == before + 30
    assert hs.pages == []  # the join is in the timeline: nothing older is wanted
    assert await store.identities.room_joins(ME) == {ROOM: 1_030}


async def test_known_join_drops_older_events_after_a_restart(store: Store) -> None:
    await store.identities.advance(ME, "s1", {}, {ROOM: 1_050})
    hs = FakeHomeserver([msg(n) for n in range(40, 60)])
    hs.sync_limited(20, "s2", limited=False)
    sink = await run(store, hs)
    assert sink.ids() == [f"$m{n}" for n in range(50, 60)]


async def test_profile_change_is_not_a_join(store: Store) -> None:
    history = [msg(n) for n in range(10)] + [join(10, prev="join")] + [msg(11)]
    await store.identities.set_sync_token(ME, "s1")
    hs = FakeHomeserver(history)
    hs.sync_limited(12, "s2")
    sink = await run(store, hs)
    assert len(sink.ids()) == 12
    assert await store.identities.room_joins(ME) == {}


async def test_first_sync_ever_does_not_backfill(store: Store) -> None:
    hs = FakeHomeserver([msg(n) for n in range(500)])
    hs.sync_limited(100, "s1")
    sink = await run(store, hs)
    assert hs.pages == []
    assert len(sink.ids()) == 100


async def test_transient_backfill_error_replays_the_batch(store: Store) -> None:
    history = [msg(n) for n in range(200)]
    await with_mark(store, history[9])
    hs = FakeHomeserver(history)
    hs.messages_errors = [MatrixConnectionError("down")]
    hs.sync_limited(100, "s2")
    hs.sync_limited(100, "s2")  # the homeserver's answer to the same token, again
    sink = await run(store, hs)
    # The first try failed before admitting or storing anything; the restarted loop
    # asked again from the same token and filled the whole gap.
    assert hs.since_seen[:3] == ["s1", "s1", "s2"]
    assert sink.ids() == [f"$m{n}" for n in range(10, 200)]
    assert await store.identities.get_sync_token(ME) == "s2"


async def test_refused_backfill_delivers_what_it_has(store: Store) -> None:
    history = [msg(n) for n in range(200)]
    await with_mark(store, history[9])
    hs = FakeHomeserver(history)
    hs.messages_errors = [ForbiddenError("no", http_status=403, errcode="M_FORBIDDEN")]
    hs.sync_limited(100, "s2")
    sink = await run(store, hs)
    assert sink.ids() == [f"$m{n}" for n in range(100, 200)]
    assert await store.identities.get_sync_token(ME) == "s2"


async def test_failing_invitation_never_holds_the_token(store: Store) -> None:
    await store.identities.set_sync_token(ME, "s1")
    hs = FakeHomeserver([])
    invite_state = {
        "events": [
            {
                "type": "m.room.member",
                "state_key": ME,
                "sender": "@alice:x",
                "content": {"membership": "invite"},
            }
        ]
    }
    hs.script.append(
        {"next_batch": "s2", "rooms": {"invite": {"!new:x": {"invite_state": invite_state}}}}
    )
    hs.script.append({"next_batch": "s3"})
    before = dropped("invite_failed")
    sink = await run(store, hs, sink=Sink(invite_error=ForbiddenError("nope", http_status=403)))
    assert [i.room_id for i in sink.invites] == ["!new:x"]
    assert hs.since_seen[:3] == ["s1", "s2", "s3"]
    assert await store.identities.get_sync_token(ME) == "s3"
    assert dropped("invite_failed") == before + 1
