"""A turn's admission with the writes that go along with it (a message's routing
decision): both written, idempotent, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from salon.store import Store
from salon.store.saved import Decision


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_decision_goes_along_with_the_admission(store: Store) -> None:
    decision = Decision("$e1", "!room:x", ("coder",), "agent_room", "", sender="@alice:x")
    along = (store.decisions.statement(decision),)

    assert await store.turns.admit("$e1", "coder", "!room:x", along=along) is True
    assert await store.turns.admit("$e1", "coder", "!room:x", along=along) is False

    turn = await store.turns.get("$e1", "coder")
    assert turn is not None and turn.open and turn.attempts == 0
    stored = await store.decisions.get("$e1")
    assert stored is not None
    assert (stored.agents, stored.reason, stored.sender) == (("coder",), "agent_room", "@alice:x")
