"""`salon logs`: the last lines of the gateway's (or Synapse's) log file, or follow it.

The gateway writes one JSON object per line to ``<data-dir>/salon.log`` (see
:func:`salon.log.configure`); they are shown as ``time level logger: event
key=value…``. Other lines (Synapse's log) are shown as they are.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

GATEWAY_LOG = "salon.log"
SYNAPSE_LOG = Path("synapse") / "homeserver.log"
_BLOCK = 64 * 1024
_FIRST_KEYS = ("timestamp", "level", "logger", "event")


def log_path(data_dir: Path, *, synapse: bool = False) -> Path:
    """The gateway's log file in ``data_dir``, or the embedded Synapse's."""
    return data_dir / (SYNAPSE_LOG if synapse else GATEWAY_LOG)


def tail(path: Path, n: int, *, end: int | None = None) -> list[str]:
    """The last ``n`` lines of ``path`` (before byte ``end``), read from the end."""
    if n <= 0:
        return []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell() if end is None else min(end, f.tell())
        data = b""
        while end > 0 and data.count(b"\n") <= n:
            start = max(0, end - _BLOCK)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-n:]


def format_line(line: str) -> str:
    """A JSON log line as ``time level logger: event key=value…``; other lines as they are."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "event" not in record:
        return line
    stamp = str(record.get("timestamp", "")).replace("T", " ").removesuffix("Z")
    stamp = stamp.split(".", 1)[0]
    level = str(record.get("level", "")).lower()
    head = f"{stamp} {level:<7} {record.get('logger', '')}: {record.get('event')}"
    rest = {k: v for k, v in record.items() if k not in _FIRST_KEYS and k != "exception"}
    extras = " ".join(f"{k}={_value(v)}" for k, v in rest.items())
    text = f"{head} {extras}" if extras else head
    exception = record.get("exception")
    return f"{text}\n{exception}" if exception else text


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


def follow(
    path: Path,
    emit: Callable[[str], None],
    *,
    stop: Callable[[], bool] = lambda: False,
    poll_s: float = 0.25,
    offset: int | None = None,
) -> None:
    """Call ``emit`` with each line appended to ``path`` until ``stop()`` is true.

    Starts at byte ``offset`` of the file (None: its end, as it is now). Survives
    rotation (the file is replaced or truncated: the new one is read from its
    start) and a file that does not exist yet (read from its start once it does).
    """
    handle: IO[bytes] | None = None
    inode: int | None = None
    pending = b""
    try:
        while not stop():
            if handle is None:
                try:
                    handle = path.open("rb")
                except FileNotFoundError:
                    offset = 0
                    time.sleep(poll_s)
                    continue
                inode = os.fstat(handle.fileno()).st_ino
                if offset is None:
                    handle.seek(0, os.SEEK_END)
                else:
                    handle.seek(offset)
                offset = 0  # a file that appears later (or anew) is read whole
            chunk = handle.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    emit(line.decode("utf-8", errors="replace"))
                continue
            try:
                current = path.stat()
            except FileNotFoundError:
                current = None
            if current is None or current.st_ino != inode or current.st_size < handle.tell():
                # Rotated (a new file under the name) or truncated: finish, then reopen.
                handle.close()
                handle, pending = None, b""
                continue
            time.sleep(poll_s)
    finally:
        if handle is not None:
            handle.close()
