"""Reply shapes and transaction ids."""

from salon.ids import UserId
from salon.matrix.events import parse_event
from salon.turns.replies import TURN_KEY, ReplyTo, reply_content, txn_id


def test_txn_id_is_stable_per_turn_and_part() -> None:
    assert txn_id("$e", "echo", 0) == txn_id("$e", "echo", 0)
    assert txn_id("$e", "echo", 0) != txn_id("$e", "echo", 1)
    assert txn_id("$e", "echo", 0) != txn_id("$e", "parrot", 0)


def test_reply_in_thread_stays_in_thread() -> None:
    raw = {
        "event_id": "$q",
        "sender": "@a:x",
        "type": "m.room.message",
        "origin_server_ts": 1,
        "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}},
    }
    event = parse_event(raw, "!r", UserId("@b:x"))
    assert event is not None
    content = reply_content(ReplyTo.event(event), "echo", "hi")
    assert content["m.relates_to"]["rel_type"] == "m.thread"
    assert content["m.relates_to"]["event_id"] == "$root"
    assert content[TURN_KEY] == {"event_id": "$q", "agent": "echo", "final": True, "hop": 1}


def test_replies_of_two_turns_with_the_same_text_differ() -> None:
    # The homeserver derives an event's id from its content: two identical replies sent
    # in the same instant (two runs of one cron job, with no event to reply to) would
    # be stored as one event, and one run would edit the other's message.
    first = reply_content(ReplyTo(), "beta", "tick", turn="cron:beta:tick:100")
    second = reply_content(ReplyTo(), "beta", "tick", turn="cron:beta:tick:102")
    assert first != second
    assert first[TURN_KEY]["turn"] == "cron:beta:tick:100"
