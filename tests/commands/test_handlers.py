"""What each `!` command does, on a real store and a fake homeserver."""

from __future__ import annotations

import pytest
from tests.commands.harness import ALICE, BOB, CODER, ROUTER, WRITER, Harness

from salon import responses
from salon._exceptions import ForbiddenError, MatrixConnectionError, is_transient
from salon.agents.tools import DelegationOutcome
from salon.commands.handlers import COMMANDS
from salon.store.records import InboxItem, RoomKind
from salon.store.saved import Decision


def en(key: str, **values: object) -> str:
    return responses.text(key, "en", **values)


@pytest.mark.parametrize("locale", sorted(responses.CATALOGUE))
def test_help_names_every_command(locale: str) -> None:
    help_text = COMMANDS.render_help(locale)
    missing = [spec.name for spec in COMMANDS if f"\n!{spec.name}" not in help_text]
    assert missing == []


async def test_help_and_unknown_commands(h: Harness) -> None:
    room = await h.shared_room()
    assert await h.ask(room, "!help") == [COMMANDS.render_help("en")]
    assert await h.ask(room, "!frobnicate") == [en("unknown_command", command="frobnicate")]


async def test_agent_lists_and_picks(h: Harness) -> None:
    room = await h.shared_room()
    await h.store.rooms.upsert(room, RoomKind.LOBBY)
    [listing] = await h.ask(room, "!agent")
    assert "1. Coder (coder) — Writes code" in listing
    assert "2. Writer (writer)" in listing

    assert await h.ask(room, "!agent 2") == [en("agent_selected", label="Writer")]
    assert (await h.store.users.get(ALICE)).selected_agent == "writer"
    [listing] = await h.ask(room, "!agent")
    assert "→ 2. Writer" in listing

    assert await h.ask(room, "!agent coder") == [en("agent_selected", label="Coder")]
    assert await h.ask(room, "!agent 9") == [en("agent_choice_out_of_range", max=2)]
    assert await h.ask(room, "!agent nobody") == [en("agent_choice_unknown", choice="nobody")]
    assert (await h.store.users.get(ALICE)).selected_agent == "coder"


async def test_agent_in_an_unbound_room_binds_it_and_invites_the_agent(h: Harness) -> None:
    room = await h.shared_room()
    assert await h.ask(room, "!agent coder") == [en("agent_selected_and_bound", label="Coder")]
    bound = await h.store.rooms.get(room)
    assert bound is not None and (bound.kind, bound.agent_id) == (RoomKind.BOUND, "coder")
    assert h.hs.room(room).members[CODER.user_id] == "invite"


async def test_new_needs_an_agent_then_makes_chats_in_the_persons_space(h: Harness) -> None:
    room = await h.shared_room()
    assert await h.ask(room, "!new") == [en("new_needs_agent")]
    await h.ask(room, "!agent coder")

    [first] = await h.ask(room, "!new")
    [second] = await h.ask(room, "!new Ideas")
    chats = await h.store.rooms.chats_of(ALICE)
    assert [(c.name, c.agent_id, c.kind) for c in chats] == [
        ("Chat 1", "coder", RoomKind.CHAT),
        ("Ideas", "coder", RoomKind.CHAT),
    ]
    link = f"https://matrix.to/#/{chats[0].room_id}"
    assert first == en("new_created", name="Chat 1", link=link, label="Coder")
    assert "Ideas" in second
    chat = h.hs.room(chats[0].room_id)
    # Made by the router, which leaves it to the person and the agent (joined first).
    assert chat.members == {ROUTER: "leave", ALICE: "invite", CODER.user_id: "join"}
    space_id = (await h.store.users.get(ALICE)).space_id
    assert space_id is not None
    space = h.hs.room(space_id)
    assert {k for t, k in space.state if t == "m.space.child"} == {c.room_id for c in chats}
    assert ("m.space.parent", space_id) in chat.state

    [listing] = await h.ask(room, "!chats")
    assert "• Chat 1 — Coder" in listing and "• Ideas — Coder" in listing


async def test_new_failing_says_so(h: Harness) -> None:
    room = await h.shared_room()
    await h.ask(room, "!agent coder")
    h.router.fail("create_room", ForbiddenError("no", http_status=403, errcode="M_FORBIDDEN"))
    assert await h.ask(room, "!new") == [en("new_failed", error="ForbiddenError")]


async def test_new_during_an_outage_is_retried_not_refused(h: Harness) -> None:
    # Raised, the inbox keeps the command pending and runs it again later (see the
    # dispatcher); the re-run makes the one chat (idempotent per command event).
    room = await h.shared_room()
    await h.ask(room, "!agent coder")
    h.hs.down = True
    with pytest.raises(MatrixConnectionError) as raised:
        await h.ask(room, "!new", event_id="$new")
    assert is_transient(raised.value)
    h.hs.down = False
    [created] = await h.ask(room, "!new", event_id="$new")
    [chat] = await h.store.rooms.chats_of(ALICE)
    assert created.startswith("New chat “Chat 1” with Coder") and chat.room_id in created


async def test_chats_rename_and_archive(h: Harness) -> None:
    room = await h.shared_room()
    assert await h.ask(room, "!chats") == [en("chats_empty")]
    assert await h.ask(room, "!rename X") == [en("rename_not_chat")]
    assert await h.ask(room, "!archive") == [en("archive_not_chat")]
    await h.ask(room, "!agent coder")
    await h.ask(room, "!new")
    [chat] = await h.store.rooms.chats_of(ALICE)
    await h.agents[CODER.agent_id].join(chat.room_id)

    assert await h.ask(chat.room_id, "!rename") == [en("rename_needs_name")]
    assert await h.ask(chat.room_id, "!rename Plans", sender=BOB) == [en("rename_not_chat")]
    assert await h.ask(chat.room_id, "!rename Plans") == [en("renamed", name="Plans")]
    assert h.hs.room(chat.room_id).state[("m.room.name", "")]["content"] == {"name": "Plans"}

    assert await h.ask(chat.room_id, "!archive") == [en("archived", name="Plans")]
    archived = await h.store.rooms.get(chat.room_id)
    assert archived is not None and archived.archived
    members = h.hs.room(chat.room_id).members
    assert members[ROUTER] == members[CODER.user_id] == "leave"
    assert await h.ask(room, "!chats") == [en("chats_empty")]


async def _routed(
    h: Harness, event_id: str, room: str, sender: str, *agents: str, say_sender: bool = False
) -> None:
    """An admitted message and its routing decision, as the dispatcher records them
    (the sender is taken from the inbox unless the decision says it)."""
    item = InboxItem(event_id, room, sender, "m.room.message", "{}", 0, ROUTER)
    await h.store.inbox.admit([item])
    reason = "agent_room" if agents else "nobody"
    decision = Decision(event_id, room, agents, reason, "detail", sender if say_sender else None)
    await h.store.decisions.record(decision)


async def test_why_explains_the_newest_message_from_a_person(h: Harness) -> None:
    room = await h.shared_room()
    assert await h.ask(room, "!why") == [en("why_unknown")]
    await _routed(h, "$question", room, ALICE, "coder")
    # The agent's own reply is routed too (to nobody); it must not hide the question.
    await _routed(h, "$answer", room, CODER.user_id)
    why = en("why_decision", label="Coder", reason=en("route_reason_agent_room"), detail="detail")
    assert await h.ask(room, "!why") == [why]

    await _routed(h, "$aside", room, BOB, say_sender=True)
    await _routed(h, "$aside-answer", room, WRITER.user_id, say_sender=True)
    nobody = en("why_nobody", reason=en("route_reason_nobody"))
    assert await h.ask(room, "!why") == [nobody]


async def test_why_in_reply_to_an_agents_reply_explains_what_it_answered(h: Harness) -> None:
    room = await h.shared_room()
    await _routed(h, "$question", room, ALICE, "writer")
    await _routed(h, "$answer", room, WRITER.user_id)
    await h.store.turns.admit("$question", "writer", room)
    await h.store.turns.set_reply("$question", "writer", "$answer")
    why = en("why_decision", label="Writer", reason=en("route_reason_agent_room"), detail="detail")
    assert await h.ask(room, "!why", reply_to="$answer") == [why]
    assert await h.ask(room, "!why", reply_to="$question") == [why]


async def test_stop_reports_how_many_answers_stopped(h: Harness) -> None:
    room = await h.shared_room()
    assert await h.ask(room, "!stop") == [en("stop_nothing")]
    h.running = 2
    assert await h.ask(room, "!stop") == [en("stop_done", count=2)]
    assert h.stopped == [room, room]


async def test_lang_switches_the_persons_language(h: Harness) -> None:
    room = await h.shared_room()
    assert await h.ask(room, "!lang xx") == [en("lang_unknown", locale="xx")]
    assert await h.ask(room, "!lang ru") == [responses.text("lang_set", "ru", locale="ru")]
    assert (await h.store.users.get(ALICE)).locale == "ru"
    assert await h.ask(room, "!help") == [COMMANDS.render_help("ru")]


async def test_delegate_from_an_agent_room(h: Harness) -> None:
    room = await h.shared_room()
    assert await h.ask(room, "!delegate writer a poem") == [en("delegate_usage")]
    await h.store.rooms.upsert(room, RoomKind.AGENT, agent_id="coder")
    assert await h.ask(room, "!delegate writer") == [en("delegate_usage")]
    assert h.delegations.asked == []

    # Accepted: the room agent's report turn answers later, the router says nothing now.
    assert await h.ask(room, "!delegate @Writer  a poem", event_id="$d1") == []
    assert h.delegations.asked == [
        {
            "from": "coder",
            "to": "writer",
            "task": "a poem",
            "origin_room": room,
            "origin_event": "$d1",
            "wait": False,
            "for_user": ALICE,  # done for whoever typed it
        }
    ]
    h.delegations.outcome = DelegationOutcome(False, "[OFFLINE] writer")
    assert await h.ask(room, "!delegate writer a poem") == ["[OFFLINE] writer"]
