"""Parsing /sync: malformed events are dropped (and counted), never raised."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from salon.ids import UserId
from salon.matrix.events import parse_event, parse_sync
from salon.metrics import EVENTS_DROPPED

ME = UserId("@salon_echo:localhost")


def _event(**over: Any) -> dict[str, Any]:
    base = {
        "event_id": "$abc",
        "sender": "@alice:localhost",
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hi"},
        "origin_server_ts": 1700000000000,
    }
    base.update(over)
    return base


def _dropped(reason: str) -> float:
    return EVENTS_DROPPED.labels(reason=reason)._value.get()


def test_valid_event_parses_with_opaque_room_id() -> None:
    # Room version 12 ids carry no server name: nothing may parse one out.
    event = parse_event(_event(), "!opaqueRoomIdWithoutServer", ME)
    assert event is not None
    assert event.room_id == "!opaqueRoomIdWithoutServer"
    assert event.body == "hi"
    assert event.received_by == ME


def test_malformed_event_is_dropped_and_counted() -> None:
    before = _dropped("bad_sender")
    assert parse_event(_event(sender=42), "!r", ME) is None
    assert _dropped("bad_sender") == before + 1


def test_thread_and_edit_relations() -> None:
    thread = parse_event(
        _event(
            content={"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}
        ),
        "!r",
        ME,
    )
    edit = parse_event(
        _event(content={"body": "x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}}),
        "!r",
        ME,
    )
    assert thread is not None and thread.thread_root == "$root"
    assert edit is not None and edit.replaces == "$o"


def test_parse_sync_collects_timeline_and_invites() -> None:
    data = {
        "next_batch": "s1",
        "rooms": {
            "join": {"!a": {"timeline": {"events": [_event(), {"bad": True}]}}},
            "invite": {
                "!b": {
                    "invite_state": {
                        "events": [
                            {
                                "type": "m.room.member",
                                "state_key": ME,
                                "sender": "@alice:localhost",
                                "content": {"membership": "invite"},
                            }
                        ]
                    }
                }
            },
        },
    }
    events, invites = parse_sync(data, ME)
    assert [e.event_id for e in events] == ["$abc"]
    assert invites[0].room_id == "!b" and invites[0].sender == "@alice:localhost"


@given(
    st.recursive(
        st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_arbitrary_payloads_never_raise(raw: Any) -> None:
    parse_event(raw, "!r", ME)
    parse_sync({"rooms": {"join": {"!r": {"timeline": {"events": [raw]}}}}}, ME)
