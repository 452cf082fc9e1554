"""A notes agent: remembers and recalls short notes, per person, on disk.

Shows a ``python`` backend with durable state of its own, kept in the agent's
home dir (``current_agent().home``, i.e. ``<data_dir>/agents/<id>/``) in one
small JSON file written atomically (temporary file, fsync, rename), so a crash
never leaves half a file. What it understands:

- ``remember <text>`` (or ``note <text>``): add a note;
- ``notes`` / ``recall`` / ``what are my notes?``: list them, numbered;
- ``forget <n>``: drop note *n*; ``forget all``: drop every note;
- ``export notes``: the notes as a file, ``notes.txt`` (an agent answering with a file).

**Whose notes.** Notes belong to the person the turn works for,
``request.for_user``, which the gateway sets: the person who wrote, or — for a
task another agent delegated (the concierge asking on someone's behalf) — the
person that delegation is for, carried in the request's ``for_user`` field.
Nothing in the text can change whose notes they are (``for @bob:… notes`` is
just text). A delegated task for nobody in particular (``salon delegate`` over
the API, say) keeps no notes; any other turn without ``for_user`` (an agent's
message, an API call) uses the sender's own notes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from salon._exceptions import BackendError
from salon.agents.backend import TurnRequest
from salon.agents.context import current_agent
from salon.agents.reply_files import ReplyFile
from salon.demo.common import nothing_for_me, strip_mentions

FILE_NAME = "notes.json"
MAX_NOTE_CHARS = 500
MAX_NOTES_PER_PERSON = 100

HELP = (
    "I keep notes for you: `remember <something>`, `notes` to list them, "
    "`forget <n>` or `forget all`, `export notes` for a file"
)

_POLITE = r"(?:(?:please|can\s+you|could\s+you)\s+)?"
_ADD = re.compile(rf"^{_POLITE}(?:remember|note)(?:\s+that)?[\s:,]+(?P<text>\S.*)$", re.S | re.I)
_FORGET_ALL = re.compile(rf"^{_POLITE}forget\s+(?:all|everything)\b", re.I)
_FORGET_ONE = re.compile(rf"^{_POLITE}forget\s+(?:note\s+)?#?(?P<n>\d+)\b", re.I)
_EXPORT = re.compile(rf"^{_POLITE}(?:export|download|send)(?:\s+(?:me\s+)?my)?\s+notes\b", re.I)
_LIST = re.compile(r"\b(?:notes|recall|list|remember)\b", re.I)


class NotesFileError(BackendError):
    """The notes file exists but cannot be read as notes."""


def delegated(request: TurnRequest) -> bool:
    """Whether ``request`` is a task another agent of this deployment delegated."""
    # The gateway runs a delegated task in the session `agent:<id>:delegation:<root>`.
    return ":delegation:" in request.session_key


NOBODY = "I keep notes for people, and this task does not say whom it is for."


def person_of(request: TurnRequest) -> str | None:
    """Whose notes the request is about: the gateway's ``for_user``; else the sender,
    except in a delegated task (whose sender is the delegating agent): then nobody."""
    if request.for_user:
        return request.for_user
    return None if delegated(request) else request.sender


class NotesFile:
    """Every person's notes in one JSON file: ``{"version": 1, "people": {user: [note]}}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, list[dict[str, str]]]:
        """Everyone's notes (empty when there is no file yet); NotesFileError if unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise NotesFileError(self._unreadable(exc)) from exc
        people = data.get("people") if isinstance(data, dict) else None
        if not isinstance(people, dict):
            raise NotesFileError(self._unreadable("no 'people' object"))
        return {
            str(person): [n for n in notes if isinstance(n, dict) and "text" in n]
            for person, notes in people.items()
            if isinstance(notes, list)
        }

    def save(self, people: Mapping[str, list[dict[str, str]]]) -> None:
        """Replace the file atomically: a reader sees the old notes or the new, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"version": 1, "people": {p: n for p, n in people.items() if n}},
            ensure_ascii=False,
            indent=1,
        )
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _unreadable(self, why: object) -> str:
        return f"the notes file {self.path} cannot be read ({why}); fix it or move it away"


def _listing(notes: list[dict[str, str]]) -> str:
    if not notes:
        return "You have no notes yet. Say `remember <something>`."
    lines = [f"{i}. {note['text']}" for i, note in enumerate(notes, start=1)]
    return "Your notes:\n" + "\n".join(lines)


def apply(notes_file: NotesFile, person: str, text: str, *, now: datetime) -> str:
    """Carry out one request of ``person`` against the file; the reply."""
    text = strip_mentions(text)
    if match := _ADD.match(text):
        note = " ".join(match.group("text").split()).rstrip()
        if len(note) > MAX_NOTE_CHARS:
            return f"That note is too long: keep it under {MAX_NOTE_CHARS} characters."
        people = notes_file.load()
        notes = people.setdefault(person, [])
        if len(notes) >= MAX_NOTES_PER_PERSON:
            return f"You already have {len(notes)} notes; `forget` some first."
        notes.append({"text": note, "added": now.isoformat(timespec="seconds")})
        notes_file.save(people)
        return f"Noted #{len(notes)}: {note}"
    if _FORGET_ALL.match(text):
        people = notes_file.load()
        count = len(people.pop(person, []))
        if not count:
            return "You have no notes to forget."
        notes_file.save(people)
        return f"Forgot all {count} of your notes." if count > 1 else "Forgot your note."
    if match := _FORGET_ONE.match(text):
        people = notes_file.load()
        notes = people.get(person, [])
        n = int(match.group("n"))
        if not 1 <= n <= len(notes):
            have = f"you have {len(notes)}" if notes else "you have none"
            return f"There is no note #{n} ({have})."
        gone = notes.pop(n - 1)
        notes_file.save(people)
        return f"Forgot #{n}: {gone['text']}"
    if _LIST.search(text):
        return _listing(notes_file.load().get(person, []))
    return nothing_for_me(HELP)


class Notes:
    """The ``python`` backend (``entry: salon.demo.notes:Notes``).

    Option ``file``: the file's name in the agent's home dir (default
    ``notes.json``). ``home`` (keyword only, for tests) replaces the home dir.
    """

    def __init__(
        self, agent_id: str, options: Mapping[str, Any], *, home: Path | None = None
    ) -> None:
        self.agent_id = agent_id
        self.file_name = str(options.get("file") or FILE_NAME)
        if Path(self.file_name).name != self.file_name or self.file_name in (".", ".."):
            raise ValueError(f"file must be a plain file name, not {self.file_name!r}")
        self.home = home
        # One request at a time: a read-modify-write must not interleave with another.
        self._lock = asyncio.Lock()

    def notes_file(self) -> NotesFile:
        """The file, in the home dir of the agent whose turn runs (or the given home)."""
        home = self.home if self.home is not None else current_agent().home
        return NotesFile(home / self.file_name)

    async def stream(self, request: TurnRequest) -> AsyncIterator[str | ReplyFile]:
        """One reply: what was noted, listed or forgotten, or a hint (``export notes``:
        a line of text, then the notes as a file)."""
        person = person_of(request)
        if person is None:
            yield NOBODY
            return
        text = request.text.strip()
        notes_file = self.notes_file()
        if _EXPORT.match(strip_mentions(text)):
            notes = (await asyncio.to_thread(notes_file.load)).get(person, [])
            if not notes:
                yield _listing(notes)
                return
            yield (
                f"Your {len(notes)} notes, as a file."
                if len(notes) > 1
                else "Your note, as a file."
            )
            yield ReplyFile("notes.txt", "text/plain", (_listing(notes) + "\n").encode())
            return
        async with self._lock:
            now = datetime.now(UTC)
            reply = await asyncio.to_thread(apply, notes_file, person, text, now=now)
        yield reply
