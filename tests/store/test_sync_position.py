"""Per-room sync position: marks and joins are stored with the token and never go back."""

from salon.store import Store
from salon.store.invites import InviteState


async def test_position_is_stored_together_and_survives_reopen(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.identities.ensure("@a:x")
    await store.identities.advance("@a:x", "s1", {"!r": ("$e1", 100)}, {"!r": 50})
    await store.close()

    store = await Store.open(store_url)
    assert await store.identities.get_sync_token("@a:x") == "s1"
    assert await store.identities.room_marks("@a:x") == {"!r": ("$e1", 100)}
    assert await store.identities.room_joins("@a:x") == {"!r": 50}
    assert await store.identities.joined_at("@a:x", "!r") == 50
    assert await store.identities.joined_at("@a:x", "!other") is None
    await store.close()


async def test_marks_and_joins_never_move_back(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.identities.ensure("@a:x")
    await store.identities.advance("@a:x", "s2", {"!r": ("$e2", 200)}, {"!r": 150})
    # A replayed older batch: the token follows the caller, the room facts do not regress.
    await store.identities.advance("@a:x", None, {"!r": ("$e1", 100)}, {"!r": 50})
    assert await store.identities.get_sync_token("@a:x") == "s2"
    assert await store.identities.room_marks("@a:x") == {"!r": ("$e2", 200)}
    assert await store.identities.room_joins("@a:x") == {"!r": 150}
    # A rejoin moves the join forward.
    await store.identities.advance("@a:x", "s3", {}, {"!r": 300})
    assert await store.identities.room_joins("@a:x") == {"!r": 300}
    await store.close()


async def test_invites_are_due_until_closed(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.invites.record("@a:x", "!r", "@alice:x")
    await store.invites.retry_at("@a:x", "!r", 10**15, "down")
    assert await store.invites.due(now=10**15 - 1) == []
    assert await store.invites.next_due() == 10**15
    [due] = await store.invites.due(now=10**15)
    assert (due.state, due.attempts, due.reason) == (InviteState.PENDING, 1, "down")
    await store.invites.close("@a:x", "!r", InviteState.FAILED, "M_FORBIDDEN")
    assert await store.invites.next_due() is None
    record = await store.invites.get("@a:x", "!r")
    assert record is not None and (record.state, record.attempts) == (InviteState.FAILED, 2)
    await store.close()
