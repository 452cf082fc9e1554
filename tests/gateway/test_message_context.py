"""A message's context, gathered once: the store first, Matrix only when routing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.fake_matrix import FakeHomeserver, FakeMatrixAPI
from tests.gateway.helpers import (
    ALICE,
    CODER,
    CODER_USER,
    ROUTER,
    SERVER,
    WRITER,
    WRITER_USER,
    event,
    make_config,
    make_roster,
    open_store,
)

from salon.gateway.message_context import Message, MessageContexts
from salon.gateway.roomfacts import RoomFacts
from salon.ids import RoomId
from salon.routing.context import Binding
from salon.store import Store
from salon.store.records import InboxState, RoomKind
from salon.turns.voices import RoomVoices

# Everyone on the test server may talk (access fails closed without it).
OPEN_TO_SERVER = make_config(access={"allowed_users": [f"@*:{SERVER}"]})


@dataclass
class Rig:
    contexts: MessageContexts
    router: FakeMatrixAPI
    coder: FakeMatrixAPI
    coder_room: RoomId
    lobby: RoomId


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store: Store = await open_store(tmp_path)
    hs = FakeHomeserver()
    router, coder, writer = hs.api(ROUTER), hs.api(CODER_USER), hs.api(WRITER_USER)
    coder_room = await coder.create_room(alias_localpart="salon-coder", invite=[ALICE])
    await store.rooms.upsert(coder_room, RoomKind.AGENT, agent_id=CODER, owner=CODER_USER)
    lobby = await router.create_room(alias_localpart="salon-lobby", invite=[CODER_USER])
    await coder.join(lobby)
    roster = make_roster()
    apis = {ROUTER: router, CODER_USER: coder, WRITER_USER: writer}
    voices = RoomVoices(router, {CODER: coder, WRITER: writer}, {CODER: coder_room})
    contexts = MessageContexts(
        store, roster, OPEN_TO_SERVER.access, RoomFacts(apis, roster), voices
    )
    yield Rig(contexts, router, coder, coder_room, lobby)
    await store.close()


def matrix_reads(*apis: FakeMatrixAPI) -> int:
    return sum(len(a.calls_to("joined_members")) + len(a.calls_to("get_state_event")) for a in apis)


async def test_gathering_asks_the_store_only(rig: Rig) -> None:
    """A command is answered from what :meth:`gather` found: no homeserver call."""
    message = await rig.contexts.gather(
        event(rig.coder_room, ALICE, "!help", received_by=CODER_USER)
    )
    assert isinstance(message, Message)
    assert message.owner == CODER and message.voice is rig.coder, "the agent speaks in its room"
    assert message.locale == "en" and message.sender_agent is None
    assert matrix_reads(rig.router, rig.coder) == 0


async def test_the_routing_context_of_an_agent_room(rig: Rig) -> None:
    message = await rig.contexts.gather(event(rig.coder_room, ALICE, "hi", received_by=CODER_USER))
    assert isinstance(message, Message)
    context = await rig.contexts.routing(message)
    assert context.binding == Binding(CODER, "agent")
    # Every hosted agent can be reached by a mention in an agent's own room.
    assert context.agents_in_room == {CODER, WRITER}
    assert context.hop == 0 and context.selected_agent is None
    reads = matrix_reads(rig.router, rig.coder)
    await rig.contexts.routing(message)
    assert matrix_reads(rig.router, rig.coder) == reads, "members and aliases are cached"


async def test_blank_and_unauthorised_messages_are_not_gathered(rig: Rig) -> None:
    blank = await rig.contexts.gather(event(rig.lobby, ALICE, "  "))
    assert blank == (InboxState.DROPPED, "blank")
    stranger = await rig.contexts.gather(event(rig.lobby, "@eve:elsewhere", "hello"))
    assert stranger == (InboxState.DROPPED, "unauthorised")


async def test_an_agent_room_with_its_alias_recorded_is_routed_without_a_read(rig: Rig) -> None:
    """Only the agent may set its room's aliases, so the recorded one is the room's: the
    first message after a restart costs no alias or member look-up on the reply's path."""
    store = rig.contexts.store
    alias = f"#salon-coder:{SERVER}"
    await store.rooms.upsert(
        rig.coder_room, RoomKind.AGENT, agent_id=CODER, owner=CODER_USER, alias=alias
    )
    message = await rig.contexts.gather(event(rig.coder_room, ALICE, "hi", received_by=CODER_USER))
    assert isinstance(message, Message)
    context = await rig.contexts.routing(message)
    assert context.room_aliases == (alias,)
    assert context.agents_in_room == {CODER, WRITER}
    assert context.binding == Binding(CODER, "agent")
    assert matrix_reads(rig.router, rig.coder) == 0
