"""Who an OpenAI-compatible call is: a caller that hangs up stops its turn (the
ledger row ends ``stopped``), and the ``user`` field is a label, not a way around
the per-sender turn limit (every call counts against the token's holder)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.api.openai_rig import TOKEN, MakeRig, Rig, rig_maker
from tests.gateway.helpers import CODER, ScriptedBackend, eventually

from salon.api import openai as openai_routes
from salon.api.openai_turn import API_CALLER
from salon.turns.slots import SlotLimits, TurnSlots

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
OPEN_STATES = ("admitted", "running")


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    async for make in rig_maker(tmp_path):
        yield make


def _body(stream: bool, **extra: Any) -> dict[str, Any]:
    return {
        "model": "coder",
        "messages": [{"role": "user", "content": "x"}],
        "stream": stream,
        **extra,
    }


async def _closed_turn(rig: Rig) -> tuple[str, str | None]:
    """The one coder turn's final (state, error), once its row is closed."""
    rows: list[Any] = []

    async def closed() -> bool:
        nonlocal rows
        rows = await rig.store.db.fetchall(
            "SELECT state, error FROM turns WHERE agent_id = 'coder'"
        )
        return len(rows) == 1 and rows[0]["state"] not in OPEN_STATES

    await eventually(closed, timeout=5, what="the turn's row to close")
    return rows[0]["state"], rows[0]["error"]


async def test_a_streaming_caller_that_hangs_up_mid_stream_stops_the_turn(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_routes, "DISCONNECT_POLL_S", 0.02)
    # A slow backend: the first chunk at once, the next ones seconds later.
    backend = ScriptedBackend(chunks=("first", " second", " third"), delay=1.5)
    rig = await make_rig(coder=backend)
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{rig.base_url}/chat/completions", json=_body(True), headers=HEADERS
        )
        assert response.status == 200
        async for line in response.content:
            if b'"content": "first"' in line:
                break  # mid-stream: one chunk read, more to come
        response.close()  # the caller hangs up
    state, error = await _closed_turn(rig)
    assert (state, error) == ("stopped", "stopped")
    assert backend.chunks_sent == 1 and backend.finished == 0 and backend.running == 0
    assert rig.watched() == 0


async def test_a_waiting_caller_that_hangs_up_stops_the_turn(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_routes, "DISCONNECT_POLL_S", 0.02)
    backend = ScriptedBackend(chunks=("late",), first_delay=1.5)
    rig = await make_rig(coder=backend)
    with pytest.raises(asyncio.TimeoutError):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as http,
            http.post(f"{rig.base_url}/chat/completions", json=_body(False), headers=HEADERS),
        ):
            pass
    assert await _closed_turn(rig) == ("stopped", "stopped")
    assert backend.finished == 0 and backend.chunks_sent == 0


async def test_the_user_field_does_not_dodge_the_per_sender_limit(make_rig: MakeRig) -> None:
    # One turn per sender at once: two calls naming different `user`s are one caller.
    backend = ScriptedBackend(chunks=("ok",), hold=0.3)
    slots = TurnSlots(SlotLimits(total=8, per_agent=8, per_sender=1))
    rig = await make_rig(coder=backend, slots=slots)
    client = rig.client()
    answers = await asyncio.gather(
        *(
            client.chat.completions.create(
                model="coder", messages=[{"role": "user", "content": "x"}], user=user
            )
            for user in ("alice", "bob")
        )
    )
    assert [a.choices[0].message.content for a in answers] == ["ok", "ok"]
    assert backend.calls == 2 and backend.max_running == 1  # one after the other
    # `user` stays the label the backend sees (and names the session).
    assert sorted(r.sender for r in backend.requests) == ["api:alice", "api:bob"]
    assert API_CALLER == "api"
    rows = await rig.store.db.fetchall("SELECT spec FROM turns WHERE agent_id = ?", CODER)
    assert all('"slot_sender":"api"' in r["spec"] for r in rows)
