"""The store on both backends (a SQLite file, a real PostgreSQL): idempotent inbox,
turn ledger, counters, reopen."""

from salon.store import Store
from salon.store.records import InboxItem, InboxState, RoomKind, TurnState


def _item(event_id: str) -> InboxItem:
    return InboxItem(event_id, "!room", "@alice:localhost", "m.room.message", "{}", 1, "@me:x")


async def test_inbox_admit_is_idempotent(store_url: str) -> None:
    store = await Store.open(store_url)
    assert await store.inbox.admit([_item("$1"), _item("$2")]) == 2
    assert await store.inbox.admit([_item("$2"), _item("$3")]) == 1
    assert [r.item.event_id for r in await store.inbox.pending()] == ["$1", "$2", "$3"]
    await store.inbox.mark("$1", InboxState.DONE)
    assert [r.item.event_id for r in await store.inbox.pending()] == ["$2", "$3"]
    await store.close()


async def test_state_survives_reopen(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.identities.ensure("@a:x")
    await store.identities.save_credentials("@a:x", "DEV", "tok")
    await store.identities.set_sync_token("@a:x", "s42")
    await store.rooms.upsert("!r", RoomKind.AGENT, agent_id="echo", alias="#salon-echo:x")
    await store.turns.admit("$e", "echo", "!r")
    await store.turns.start("$e", "echo")
    assert await store.kv.next("chat:@a:x") == 1
    await store.close()

    store = await Store.open(store_url)
    assert await store.identities.load_credentials("@a:x") == ("DEV", "tok")
    assert await store.identities.get_sync_token("@a:x") == "s42"
    room = await store.rooms.agent_room("echo")
    assert room is not None and room.room_id == "!r"
    unfinished = await store.turns.unfinished()
    assert [(t.event_id, t.state, t.attempts) for t in unfinished] == [("$e", TurnState.RUNNING, 1)]
    assert await store.kv.next("chat:@a:x") == 2  # counters never repeat across restarts
    await store.close()


async def test_turn_ledger_closes(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.turns.admit("$e", "echo", "!r")
    await store.turns.admit("$e", "echo", "!r")  # replayed admission: no second row
    await store.turns.start("$e", "echo")
    await store.turns.finish("$e", "echo", TurnState.REPLIED, reply_event_id="$reply")
    record = await store.turns.get("$e", "echo")
    assert record is not None
    assert (record.state, record.reply_event_id, record.attempts) == (
        TurnState.REPLIED,
        "$reply",
        1,
    )
    assert await store.turns.unfinished() == []
    await store.close()
