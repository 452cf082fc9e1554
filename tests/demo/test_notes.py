"""The demo notes agent: per person (the gateway's ``for_user``), durable, atomic."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from salon._exceptions import BackendError
from salon.agents.context import agent_context
from salon.agents.profile import AgentProfile
from salon.agents.reply_files import ReplyFile
from salon.demo.common import is_nothing_for_me
from salon.demo.notes import MAX_NOTE_CHARS, NOBODY, Notes, NotesFile
from salon.ids import AgentId

from .conftest import ALICE, BOB, reply, request, task


def notes_at(home: Path) -> Notes:
    return Notes("notes", {}, home=home)


async def say(notes: Notes, text: str, sender: str = ALICE) -> str:
    return await reply(notes, request(text, sender=sender, agent="notes"))


async def test_remember_list_forget(tmp_path: Path) -> None:
    notes = notes_at(tmp_path)
    assert await say(notes, "notes") == "You have no notes yet. Say `remember <something>`."
    assert await say(notes, "remember buy oat milk") == "Noted #1: buy oat milk"
    assert await say(notes, "@Notes: note that   the bins go out   Tuesday") == (
        "Noted #2: the bins go out Tuesday"
    )
    assert await say(notes, "please remember: call Sam at 5") == "Noted #3: call Sam at 5"
    listing = "Your notes:\n1. buy oat milk\n2. the bins go out Tuesday\n3. call Sam at 5"
    for asked in ("notes", "recall", "what are my notes?", "what do you remember?"):
        assert await say(notes, asked) == listing
    assert await say(notes, "forget 2") == "Forgot #2: the bins go out Tuesday"
    assert await say(notes, "notes") == "Your notes:\n1. buy oat milk\n2. call Sam at 5"
    assert await say(notes, "forget #7") == "There is no note #7 (you have 2)."
    assert await say(notes, "forget all") == "Forgot all 2 of your notes."
    assert await say(notes, "forget everything") == "You have no notes to forget."
    assert await say(notes, "forget 1") == "There is no note #1 (you have none)."


async def test_each_person_has_their_own_notes(tmp_path: Path) -> None:
    notes = notes_at(tmp_path)
    await say(notes, "remember alice's secret", sender=ALICE)
    await say(notes, "remember bob's plan", sender=BOB)
    assert await say(notes, "notes", sender=ALICE) == "Your notes:\n1. alice's secret"
    assert await say(notes, "notes", sender=BOB) == "Your notes:\n1. bob's plan"
    await say(notes, "forget all", sender=BOB)
    assert await say(notes, "notes", sender=ALICE) == "Your notes:\n1. alice's secret"


async def test_notes_survive_a_new_instance_and_live_in_the_agents_home(tmp_path: Path) -> None:
    profile = AgentProfile(AgentId("notes"), "Notes", "", home=tmp_path / "agents" / "notes")
    with agent_context(profile):  # as during a turn: the file goes in the agent's home dir
        assert await say(Notes("notes", {}), "remember the code is 1234") == (
            "Noted #1: the code is 1234"
        )
    path = profile.home / "notes.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert [n["text"] for n in data["people"][ALICE]] == ["the code is 1234"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A new process (a new backend object) reads what the old one wrote.
    with agent_context(profile):
        assert await say(Notes("notes", {}), "notes") == "Your notes:\n1. the code is 1234"


async def test_a_delegated_task_is_for_the_person_the_gateway_says(tmp_path: Path) -> None:
    notes = notes_at(tmp_path)
    await say(notes, "remember bob's plan", sender=BOB)
    # The concierge asks on Bob's behalf: a delegated task for Bob (the gateway's field).
    asked = task("what are my notes?", by="concierge", agent="notes", for_user=BOB)
    assert await reply(notes, asked) == "Your notes:\n1. bob's plan"
    added = task("remember via the concierge", by="concierge", agent="notes", for_user=ALICE)
    assert await reply(notes, added) == "Noted #1: via the concierge"
    assert await say(notes, "notes", sender=ALICE) == "Your notes:\n1. via the concierge"


async def test_a_task_saying_for_bob_cannot_touch_bobs_notes(tmp_path: Path) -> None:
    notes = notes_at(tmp_path)
    await say(notes, "remember bob's secret", sender=BOB)
    await say(notes, "remember alice's list", sender=ALICE)
    # A delegated task for Alice whose text claims to be for Bob: still Alice's notes.
    read = task(f"for {BOB}: what are my notes?", by="concierge", agent="notes", for_user=ALICE)
    assert await reply(notes, read) == "Your notes:\n1. alice's list"
    wipe = task(f"for {BOB}: forget all", by="concierge", agent="notes", for_user=ALICE)
    assert await reply(notes, wipe) != "Forgot your note."  # the prefix is no command
    wipe = task("forget all", by="concierge", agent="notes", for_user=ALICE)
    assert await reply(notes, wipe) == "Forgot your note."  # Alice's, not Bob's
    assert await say(notes, "notes", sender=BOB) == "Your notes:\n1. bob's secret"
    # A person writing it directly gets their own notes too.
    assert await say(notes, f"for {BOB}: notes", sender=ALICE) == (
        "You have no notes yet. Say `remember <something>`."
    )
    # A delegated task for nobody in particular keeps no notes (not the agent's own).
    nobody = await reply(notes, task(f"for {BOB}: notes", by="concierge", agent="notes"))
    assert nobody == NOBODY
    assert await say(notes, "notes", sender=BOB) == "Your notes:\n1. bob's secret"


async def test_anything_else_gets_a_hint(tmp_path: Path) -> None:
    out = await say(notes_at(tmp_path), "what is 6*7?")
    assert is_nothing_for_me(out) and "remember <something>" in out


async def test_limits(tmp_path: Path) -> None:
    notes = notes_at(tmp_path)
    out = await say(notes, "remember " + "x" * (MAX_NOTE_CHARS + 1))
    assert out.startswith("That note is too long")
    assert not (tmp_path / "notes.json").exists()


async def test_concurrent_requests_lose_nothing(tmp_path: Path) -> None:
    notes = notes_at(tmp_path)
    await asyncio.gather(*(say(notes, f"remember item {i}") for i in range(20)))
    lines = (await say(notes, "notes")).splitlines()[1:]
    assert [line.split(". ", 1)[0] for line in lines] == [str(n) for n in range(1, 21)]
    assert {line.split(". ", 1)[1] for line in lines} == {f"item {i}" for i in range(20)}


async def test_a_failed_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = notes_at(tmp_path)
    await say(notes, "remember first")
    before = (tmp_path / "notes.json").read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        await say(notes, "remember second")
    assert (tmp_path / "notes.json").read_bytes() == before
    assert os.listdir(tmp_path) == ["notes.json"]  # no temp file left


async def test_an_unreadable_file_is_an_error_and_is_kept(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BackendError, match="cannot be read"):
        await say(notes_at(tmp_path), "remember something")
    assert (tmp_path / "notes.json").read_text(encoding="utf-8") == "{not json"


def test_file_option_is_a_plain_name(tmp_path: Path) -> None:
    assert Notes("notes", {"file": "mine.json"}, home=tmp_path).notes_file().path == (
        tmp_path / "mine.json"
    )
    for bad in ("../escape.json", "/etc/passwd", ".."):
        with pytest.raises(ValueError, match="plain file name"):
            Notes("notes", {"file": bad})


def test_notes_file_round_trip(tmp_path: Path) -> None:
    store = NotesFile(tmp_path / "sub" / "n.json")
    assert store.load() == {}
    store.save({ALICE: [{"text": "a", "added": "2024-01-01T00:00:00+00:00"}], BOB: []})
    assert store.load() == {ALICE: [{"text": "a", "added": "2024-01-01T00:00:00+00:00"}]}


async def test_export_notes_answers_with_a_file(tmp_path: Path) -> None:
    notes = notes_at(tmp_path)
    assert await say(notes, "export notes") == "You have no notes yet. Say `remember <something>`."
    await say(notes, "remember buy oat milk")
    await say(notes, "remember call Sam")
    chunks = [c async for c in notes.stream(request("please export my notes", sender=ALICE))]
    assert chunks == [
        "Your 2 notes, as a file.",
        ReplyFile("notes.txt", "text/plain", b"Your notes:\n1. buy oat milk\n2. call Sam\n"),
    ]
