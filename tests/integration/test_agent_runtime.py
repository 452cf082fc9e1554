"""The agent runtime through Matrix: streaming edits, threads, sessions, stop, profiles."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salon.app.gateway import Gateway

from .conftest import Person, salon_config

PLUGINS = "tests.integration.plugins"


def _plugin(name: str, **options: Any) -> dict[str, Any]:
    return {"type": "python", "entry": f"{PLUGINS}:{name}", "options": options}


async def _room(person: Person, config: Any, agent: str, server: str) -> str:
    return await person.join(f"#{config.agent_room_alias_localpart(agent)}:{server}")


def _edits_of(history: list[dict[str, Any]], event_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in history
        if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
        and e["content"]["m.relates_to"]["event_id"] == event_id
    ]


async def _final_text(person: Person, room_id: str, asked: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = await person.history(room_id)
        for reply in await person.replies_to(room_id, asked):
            content = reply["content"]
            edits = _edits_of(history, reply["event_id"])
            latest = edits[-1]["content"]["m.new_content"] if edits else content
            if latest.get("com.salon.turn", {}).get("final"):
                return str(latest["body"])
        await asyncio.sleep(0.2)
    raise AssertionError("no final reply")


async def test_streaming_edits_respect_interval_and_count_and_end_with_full_text(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(
        synapse,
        tmp_path,
        agents={"streamer": {"backend": _plugin("chunks", count=30, delay_s=0.1)}},
        replies={"edit_interval_s": 0.5, "max_edits": 4},
    )
    await gateways(config, invite=[person.user_id])
    room_id = await _room(person, config, "streamer", synapse.server_name)
    asked = await person.say(room_id, "go")
    text = await _final_text(person, room_id, asked)
    assert text == "".join(f"c{i} " for i in range(30))

    history = await person.history(room_id)
    (first,) = await person.replies_to(room_id, asked)
    edits = _edits_of(history, first["event_id"])
    assert 1 <= len(edits) <= 4  # the final edit counts towards the bound
    assert edits[-1]["content"]["m.new_content"]["body"] == text
    stamps = [first["origin_server_ts"]] + [e["origin_server_ts"] for e in edits[:-1]]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(gap >= 450 for gap in gaps), gaps  # no edit sooner than the interval


async def test_thread_reply_lands_in_thread_with_its_own_session(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path, agents={"intro": {"backend": _plugin("introspect")}})
    await gateways(config, invite=[person.user_id])
    room_id = await _room(person, config, "intro", synapse.server_name)
    root = await person.say(room_id, "main line")
    await _final_text(person, room_id, root)
    in_thread = await person.say(
        room_id,
        "in the thread",
        **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}},
    )
    reply = await person.wait_reply(room_id, in_thread)
    assert reply["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert reply["content"]["m.relates_to"]["event_id"] == root
    # The thread is a conversation of its own: the main line's history is not in it.
    assert "history=[]" in await _final_text(person, room_id, in_thread)
    follow_up = await person.say(room_id, "main again")
    assert "history=['main line'," in await _final_text(person, room_id, follow_up)


async def test_sessions_are_per_agent_and_persona_comes_from_soul_md(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "agents" / "alpha").mkdir(parents=True)
    (data_dir / "agents" / "alpha" / "SOUL.md").write_text("You are Alpha.\n")
    config = salon_config(
        synapse,
        tmp_path,
        data_dir=str(data_dir),
        agents={
            "alpha": {"backend": _plugin("introspect", delay_s=0.3), "persona": "ignored"},
            "beta": {"backend": _plugin("introspect", delay_s=0.3), "persona": "You are Beta."},
        },
    )
    await gateways(config, invite=[person.user_id])
    alpha = await _room(person, config, "alpha", synapse.server_name)
    beta = await _room(person, config, "beta", synapse.server_name)
    first = await person.say(alpha, "secret for alpha")
    await _final_text(person, alpha, first)
    # Two turns at once: each sees its own profile (context variable) and only its history.
    a2, b1 = await asyncio.gather(person.say(alpha, "again"), person.say(beta, "hi beta"))
    text_a, text_b = await asyncio.gather(
        _final_text(person, alpha, a2), _final_text(person, beta, b1)
    )
    assert text_a.startswith("agent=alpha persona=You are Alpha.")
    assert "secret for alpha" in text_a
    assert text_b.startswith("agent=beta persona=You are Beta.")
    assert "history=[]" in text_b
    chat_a = text_a.split("chat=")[1].split()[0]
    chat_b = text_b.split("chat=")[1].split()[0]
    assert chat_a != chat_b


async def test_stop_command_and_stop_reaction_end_a_slow_reply(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(synapse, tmp_path, agents={"slowpoke": {"backend": _plugin("slow")}})
    await gateways(config, invite=[person.user_id])
    room_id = await _room(person, config, "slowpoke", synapse.server_name)

    asked = await person.say(room_id, "think hard")
    await person.wait_reply(room_id, asked)  # the partial reply is showing
    await person.say(room_id, "!stop")
    text = await _final_text(person, room_id, asked, timeout=10)
    assert text.startswith("thinking about it") and "stopped" in text

    asked = await person.say(room_id, "think again")
    partial = await person.wait_reply(room_id, asked)
    await person.react(room_id, partial["event_id"], "🛑")
    text = await _final_text(person, room_id, asked, timeout=10)
    assert "stopped" in text


async def test_unreachable_openai_endpoint_gives_a_clear_notice(
    synapse: Any, tmp_path: Path, gateways: Callable[..., Awaitable[Gateway]], person: Person
) -> None:
    config = salon_config(
        synapse,
        tmp_path,
        agents={
            "llm": {
                "backend": {
                    "type": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "max_retries": 0,
                }
            }
        },
    )
    await gateways(config, invite=[person.user_id])
    room_id = await _room(person, config, "llm", synapse.server_name)
    asked = await person.say(room_id, "hello?")
    notice = await person.wait_reply(room_id, asked)
    assert notice["content"]["msgtype"] == "m.notice"
    assert "cannot reach http://127.0.0.1:9/v1" in notice["content"]["body"]
