"""In-process agents for the integration tests (``tests.integration.plugins:<name>``)."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from salon.agents.backend import TurnRequest
from salon.agents.context import current_agent
from salon.agents.reply_files import ReplyFile

Stream = Callable[[TurnRequest], AsyncIterator[str]]


def chunks(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Streams ``count`` numbered chunks, ``delay_s`` apart."""
    count, delay = int(options.get("count", 10)), float(options.get("delay_s", 0.1))

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        for i in range(count):
            yield f"c{i} "
            await asyncio.sleep(delay)

    return stream


def slow(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Says a little, then thinks forever (until stopped)."""

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        yield "thinking about it"
        await asyncio.sleep(3600)
        yield "never shown"

    return stream


def crash(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Kills its own process when asked to (a gateway crash in the middle of a turn)."""

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        if "crash" in request.text:
            os.kill(os.getpid(), signal.SIGKILL)
        yield f"fine: {request.text}"

    return stream


def introspect(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Answers with what it can see: current agent, persona, history, chat id."""

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        await asyncio.sleep(float(options.get("delay_s", 0)))
        seen = [m.content for m in request.history]
        yield (
            f"agent={current_agent().agent_id} persona={request.persona} "
            f"chat={request.chat_id} history={seen}"
        )

    return stream


def delegating(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Hands the message to ``options['to']`` and answers with what came back."""
    from salon.agents.context import current_delegator

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        delegator = current_delegator()
        assert delegator is not None, "no delegator in this turn"
        outcome = await delegator.delegate(str(options["to"]), f"task: {request.text}")
        yield f"{agent_id} got: {outcome.text}"

    return stream


def streamed_text(text: str, count: int) -> str:
    """What ``streaming`` answers to ``text``, once every chunk arrived."""
    return "".join(f"{text}/part-{i} " for i in range(count)).rstrip()


def _calls(path: str | None, text: str) -> int:
    """Append ``text`` to the calls file (one line per backend run); returns how many
    runs for ``text`` there were before this one."""
    if not path:
        return 0
    with open(path, "a+", encoding="utf-8") as calls:
        calls.seek(0)
        before = sum(1 for line in calls if line.rstrip("\n") == text)
        calls.write(text + "\n")
    return before


def _die_after_final_edit(marker: str, died_file: str) -> None:
    """SIGKILL this process right after the homeserver took the final edit of a reply
    whose text contains ``marker`` (once per reply, across restarts: ``died_file``
    remembers): the crash window between the final send and the ledger closing the turn."""
    from salon.matrix.api import MatrixAPI

    original = MatrixAPI.send_event

    async def send_event(
        self: MatrixAPI, room_id: Any, event_type: str, content: Any, **kw: Any
    ) -> Any:
        event_id = await original(self, room_id, event_type, content, **kw)
        new = content.get("m.new_content") if isinstance(content, dict) else None
        if isinstance(new, dict) and (new.get("com.salon.turn") or {}).get("final"):
            body = str(new.get("body", ""))
            if marker in body and _calls(died_file, body.split("/", 1)[0]) == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return event_id

    MatrixAPI.send_event = send_event  # type: ignore[method-assign]


def streaming(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Streams ``streamed_text(text, count)`` in ``count`` chunks, ``delay_s`` apart.

    ``calls_file``: each run appends the message there (so a re-run is seen, and
    slowed to ``rerun_delay_s`` if set). ``die_after_final`` (with ``died_file``): the
    process kills itself right after the final edit of a reply containing this marker
    was sent, once per message.
    """
    count, delay = int(options.get("count", 20)), float(options.get("delay_s", 0.15))
    rerun_delay = float(options.get("rerun_delay_s", delay))
    calls_file = options.get("calls_file")
    if options.get("die_after_final"):
        _die_after_final_edit(str(options["die_after_final"]), str(options["died_file"]))

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        pause = rerun_delay if _calls(calls_file, request.text) else delay
        for i in range(count):
            yield f"{request.text}/part-{i}" + (" " if i < count - 1 else "")
            await asyncio.sleep(pause)

    return stream


def slow_report(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Answers a delegation result prompt slowly (a head at once, the result after
    ``delay_s``); anything else at once."""
    delay = float(options.get("delay_s", 3))

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        if request.text.startswith("The task you gave "):
            yield f"{agent_id} reports: "
            await asyncio.sleep(delay)
            yield request.text.partition("Its result:\n")[2]
        else:
            yield f"{agent_id} heard: {request.text}"

    return stream


def history_size(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Answers with how many earlier messages it was given, and the message:
    ``history=<n> <text>`` (a durable session grows by two per turn)."""

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        yield f"history={len(request.history)} {request.text}"

    return stream


def fails_midway(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Says ``partial `` and then fails (a backend error after the first chunk)."""
    from salon._exceptions import BackendError

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        yield "partial "
        await asyncio.sleep(float(options.get("delay_s", 0.05)))
        raise BackendError("fell over midway")

    return stream


RECORDED: dict[str, list[TurnRequest]] = {}


def recorder(agent_id: str, options: Mapping[str, Any]) -> Stream:
    """Keeps every request it gets (``RECORDED[agent_id]``) and says how many files came."""

    async def stream(request: TurnRequest) -> AsyncIterator[str]:
        RECORDED.setdefault(agent_id, []).append(request)
        yield f"recorded {len(request.attachments)} file(s)"

    return stream


def reply_file_bytes(name: str, size: int) -> bytes:
    """What the ``filer`` agent's file ``name`` holds (``size`` bytes)."""
    line = f"contents of {name}\n".encode()
    return (line * (size // len(line) + 1))[:size]


def filer(agent_id: str, options: Mapping[str, Any]) -> Callable[[TurnRequest], Any]:
    """Answers ``send <name> [<size>]`` with a line of text and that file."""

    async def answer(request: TurnRequest) -> list[Any]:
        words = request.text.split()
        name = words[1] if len(words) > 1 else "file.txt"
        size = int(words[2]) if len(words) > 2 else 1000
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return [f"here is {name}", ReplyFile(name, mime, reply_file_bytes(name, size))]

    return answer


def filer_killed(agent_id: str, options: Mapping[str, Any]) -> Callable[[TurnRequest], Any]:
    """Answers with two files, ``first.txt`` and ``second.txt``; the process kills itself
    (SIGKILL) at the second file's upload, the first time only (``marker``). Every
    upload is logged to ``log``, one line per file name."""
    import salon.turns.files as reply_files  # the upload step, wrapped for the crash

    marker, log = Path(options["marker"]), Path(options["log"])
    real = reply_files.upload_for_room

    def logged(name: str) -> bool:
        """Log the upload; whether this is the one to die at."""
        with log.open("a") as f:
            f.write(f"{name}\n")
        if name != "second.txt" or marker.exists():
            return False
        marker.write_text("killed")
        return True

    async def upload(*args: Any) -> Any:
        if logged(args[-1]):
            os.kill(os.getpid(), signal.SIGKILL)
        return await real(*args)

    reply_files.upload_for_room = upload

    async def answer(request: TurnRequest) -> list[Any]:
        files = [
            ReplyFile(n, "text/plain", reply_file_bytes(n, 800))
            for n in ("first.txt", "second.txt")
        ]
        return ["two files", *files]

    return answer
