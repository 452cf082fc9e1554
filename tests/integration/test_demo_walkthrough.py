"""The README's "A short tour", typed by a person, against the demo config on a real Synapse.

Keep in sync with the "A short tour" section of README.md: ``TOUR`` below is
that conversation, line for line, and ``test_tour_matches_the_readme`` fails
when the two drift apart. The agents, teams and default agent are those of
``examples/salon.yaml``; only the homeserver, names and store are the test's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salon.app.gateway import Gateway
from salon.config.loader import load_config
from salon.config.models import SalonConfig

from .conftest import Person, salon_config
from .test_agent_runtime import _final_text
from .test_approvals import wait_request

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "salon.yaml"
README = ROOT / "README.md"

# (where, what the person types): the README's tour, in order.
TOUR: list[tuple[str, str]] = [
    ("lobby", "@Clock what time is it in Tokyo?"),
    ("lobby", "what is 6*7?"),
    ("lobby", "!agent"),
    ("lobby", "!agent notes"),
    ("lobby", "!new Errands"),
    ("chat", "remember buy oat milk"),
    ("chat", "remember call Sam at 5"),
    ("chat", "notes"),
    ("lobby", "@Concierge what are my notes?"),
    ("lobby", "@Desk what is 2^10 and what time is it in London?"),
]

WHEN = r"It is \d\d:\d\d on [A-Z][a-z]+day \d{1,2} [A-Z][a-z]+ \d{4}"


def readme_tour() -> list[str]:
    """The lines a reader types in the README's tour (``> …`` inside its code blocks)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## A short tour\n", 1)[1].split("\n## ", 1)[0]
    typed, in_code = [], False
    for line in section.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code and line.startswith("> "):
            typed.append(line[2:])
    return typed


def test_tour_matches_the_readme() -> None:
    assert readme_tour() == [text for _, text in TOUR]


def demo_config(synapse: Any, tmp_path: Path) -> SalonConfig:
    """The test's config (homeserver, names, store) with the demo's agents, teams and
    default agent, and nothing else."""
    demo = load_config(EXAMPLE)
    agents = {
        agent_id: agent.model_dump(mode="json", exclude_none=True)
        for agent_id, agent in demo.agents.items()
        if agent_id not in demo.teams  # a team is listed under `teams`, not as an agent
    }
    teams = {t: team.model_dump(mode="json", exclude_none=True) for t, team in demo.teams.items()}
    sections = {"agents": agents, "teams": teams, "default_agent": demo.default_agent}
    # The demo's MCP servers, their files in the test's directory.
    sections["mcp_servers"] = {
        sid: server.model_dump(mode="json", exclude_none=True)
        | {"env": {"NOTEBOOK_FILE": str(tmp_path / "notebook.json")}}
        for sid, server in demo.mcp_servers.items()
    }
    # The tour's people are plain (non-encrypting) clients: its `!new` chat is made
    # unencrypted here (test_encrypted_chats walks the encrypted default).
    sections["encryption"] = {"rooms": "none"}
    config = salon_config(synapse, tmp_path, data_dir=str(tmp_path / "data"), **sections)
    # salon_config adds its own test agents to ours; keep only the demo's.
    return SalonConfig.model_validate({**dict(config), **sections})


async def test_the_short_tour(
    synapse: Any,
    tmp_path: Path,
    gateways: Callable[..., Awaitable[Gateway]],
    person: Person,
    new_user: Callable[..., Awaitable[Any]],
    http: Any,
) -> None:
    config = demo_config(synapse, tmp_path)
    friend = Person(await new_user(), synapse.base_url, http)
    gateway = await gateways(config, invite=[person.user_id, friend.user_id])
    server = synapse.server_name
    router = config.router_user_id(server)

    def user(agent: str) -> str:
        return str(config.agent_user_id(agent, server))

    rooms = {"lobby": await person.join(f"#{config.naming.lobby_alias}:{server}")}
    steps = iter(TOUR)

    async def say() -> tuple[str, str]:
        """Type the tour's next line where it belongs; (room, event id)."""
        where, text = next(steps)
        return rooms[where], await person.say(rooms[where], text)

    async def answer(sender: str, timeout: float = 30) -> str:
        room, asked = await say()
        reply = await person.wait_reply(room, asked, timeout=timeout)
        assert reply["sender"] == sender, reply
        if sender == router:
            return str(reply["content"]["body"])
        return await _final_text(person, room, asked, timeout=timeout)

    # 1. A mention: only the clock answers.
    text = await answer(user("clock"))
    assert re.fullmatch(rf"{WHEN} in Tokyo \(Asia/Tokyo, UTC\+09:00\)\.", text), text

    # 2. No mention: the default agent (the concierge) delegates to the calculator.
    assert await answer(user("concierge")) == "calculator says: 6*7 = 42"
    notices = [
        e["content"]["body"]
        for e in await person.history(rooms["lobby"])
        if e["sender"] == user("concierge") and e["content"].get("msgtype") == "m.notice"
    ]
    assert "concierge → calculator: what is 6*7?" in notices

    # 3. !agent, !agent notes, !new, then the private chat.
    listing = await answer(router)
    assert listing.splitlines()[1].lstrip("→ ").startswith("1. Concierge (concierge)")
    assert "Desk (desk)" in listing and "Assistant (assistant)" in listing
    assert await answer(router) == "Your agent is now Notes. Start a chat with !new."
    created = await answer(router)
    link = re.search(r"https://matrix\.to/#/(![^\s)]+)", created)
    assert created.startswith("New chat “Errands” with Notes:") and link, created
    rooms["chat"] = await person.join(link.group(1))
    assert await answer(user("notes")) == "Noted #1: buy oat milk"
    assert await answer(user("notes")) == "Noted #2: call Sam at 5"
    mine = "Your notes:\n1. buy oat milk\n2. call Sam at 5"
    assert await answer(user("notes")) == mine

    # 4. The concierge asks the notes agent for this person.
    assert await answer(user("concierge")) == f"notes says: {mine}"

    # 5. The team: both members answer, the lead merges.
    text = await answer(user("desk"), timeout=60)
    lines = text.splitlines()
    assert lines[:2] == ["Here is what the team found:", "• calculator: 2^10 = 1024"], text
    assert re.fullmatch(
        rf"• clock: {WHEN} in London \(Europe/London, UTC\+0[01]:00\)\.", lines[2]
    ), text
    assert len(lines) == 3

    # Beyond the README: someone else asking the concierge gets their own notes.
    lobby = await friend.join(f"#{config.naming.lobby_alias}:{server}")
    asked = await friend.say(lobby, "@Concierge what are my notes?")
    theirs = await _final_text(friend, lobby, asked, timeout=30)
    assert theirs == "notes says: You have no notes yet. Say `remember <something>`."
    # And the notes are on disk, in the notes agent's home dir, under each person's id.
    stored = (tmp_path / "data" / "agents" / "notes" / "notes.json").read_text(encoding="utf-8")
    assert person.user_id in stored and friend.user_id not in stored

    # Beyond the README too: the scribe keeps its notebook through the demo's MCP server.
    asked = await person.say(rooms["lobby"], "@Scribe write water the plants")
    assert await _final_text(person, rooms["lobby"], asked, timeout=30) == "Written as note 1."
    asked = await person.say(rooms["lobby"], "@Scribe read")
    assert await _final_text(person, rooms["lobby"], asked, timeout=30) == "1. water the plants"
    assert "water the plants" in (tmp_path / "notebook.json").read_text(encoding="utf-8")
    # Tearing a note out needs the person's OK: the request waits for a ✅.
    asked = await person.say(rooms["lobby"], "@Scribe forget 1")
    assert gateway.store is not None
    record = await wait_request(gateway.store)
    assert (record.tool, record.arguments) == ("notebook.forget_note", {"number": 1})
    assert "water the plants" in (tmp_path / "notebook.json").read_text(encoding="utf-8")
    await person.react(rooms["lobby"], record.request_event_id or "", "✅")
    done = await _final_text(person, rooms["lobby"], asked, timeout=30)
    assert done == "Forgot note 1: water the plants"
