"""``<data-dir>/salon.pid``: which process runs Salon from a data dir, for `salon stop`.

`salon up` and `salon run` write it when they start and remove it when they
exit cleanly. It records the pid, the command and the process's command line,
so a stale file (the process was killed) whose pid now belongs to some other
program is recognised as stale instead of that program being signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from salon._exceptions import SalonError
from salon.procs import pid_alive

FILENAME = "salon.pid"


class AlreadyRunning(SalonError):
    """Another Salon process runs from this data dir."""


@dataclass(frozen=True)
class PidInfo:
    """What the pid file says."""

    pid: int
    command: str  # "up" or "run"
    started_ms: int
    cmdline: list[str]

    @property
    def label(self) -> str:
        """How to name the process to a person: ``salon up (pid 123)``."""
        return f"salon {self.command} (pid {self.pid})"


def path(data_dir: Path) -> Path:
    """Where the pid file of ``data_dir`` lives."""
    return data_dir / FILENAME


def _cmdline(pid: int) -> list[str] | None:
    """The process's command line from /proc, or None where there is no /proc."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None if not Path("/proc/self").exists() else []
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(info: PidInfo) -> bool:
    """Whether the process the file names still runs (and is still that process)."""
    if not pid_alive(info.pid):
        return False
    cmdline = _cmdline(info.pid)
    # Where /proc exists, a reused pid shows another command line.
    return cmdline is None or not info.cmdline or cmdline == info.cmdline


def read(data_dir: Path) -> PidInfo | None:
    """The pid file's content; None if there is none (or it is unreadable)."""
    try:
        data = json.loads(path(data_dir).read_text(encoding="utf-8"))
        return PidInfo(
            pid=int(data["pid"]),
            command=str(data.get("command", "?")),
            started_ms=int(data.get("started_ms", 0)),
            cmdline=[str(part) for part in data.get("cmdline") or []],
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(data_dir: Path, pid: int | None = None) -> None:
    """Delete the pid file (only if it names ``pid``, when given)."""
    if pid is not None:
        info = read(data_dir)
        if info is not None and info.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path(data_dir).unlink()


def running(data_dir: Path) -> PidInfo | None:
    """The live process of ``data_dir``; a stale pid file is removed on the way."""
    info = read(data_dir)
    if info is None:
        if path(data_dir).exists():
            remove(data_dir)  # unreadable: nobody can use it
        return None
    if not alive(info):
        remove(data_dir, info.pid)
        return None
    return info


def _write(data_dir: Path, command: str) -> PidInfo:
    pid = os.getpid()
    cmdline = _cmdline(pid)
    info = PidInfo(
        pid=pid,
        command=command,
        started_ms=int(time.time() * 1000),
        cmdline=cmdline if cmdline is not None else list(sys.argv),
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path(data_dir).with_suffix(f".{pid}.tmp")
    tmp.write_text(json.dumps(asdict(info)) + "\n", encoding="utf-8")
    tmp.replace(path(data_dir))
    return info


@contextlib.contextmanager
def holding(data_dir: Path, command: str) -> Iterator[PidInfo]:
    """Write the pid file for this process for the block; refuse if another one runs.

    Raises:
        AlreadyRunning: a live Salon process already holds ``data_dir``.
    """
    other = running(data_dir)
    if other is not None and other.pid != os.getpid():
        raise AlreadyRunning(
            f"Salon is already running from {data_dir}: {other.label}. "
            f"Stop it with `salon stop{data_dir_flag(data_dir)}`, or use another --data-dir."
        )
    info = _write(data_dir, command)
    try:
        yield info
    finally:
        remove(data_dir, info.pid)


def data_dir_flag(data_dir: Path) -> str:
    """`` --data-dir X`` unless ``data_dir`` is the default one."""
    return "" if data_dir == Path("salon-data") else f" --data-dir {data_dir}"


def not_running(data_dir: Path, stale: PidInfo | None) -> str:
    """What `salon stop` / `salon reload` say when nothing runs from ``data_dir``."""
    removed = f" (removed the stale pid file of {stale.label})" if stale else ""
    return f"Salon is not running from {data_dir}{removed}."


@dataclass(frozen=True)
class StopResult:
    """What `salon stop` did."""

    info: PidInfo | None  # None: nothing was running
    stopped: bool
    waited_s: float = 0.0
    stale: PidInfo | None = None  # a pid file of a process that is gone (now removed)


def stop(
    data_dir: Path,
    *,
    timeout_s: float = 30.0,
    poll_s: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
) -> StopResult:
    """SIGTERM the process of ``data_dir`` and wait up to ``timeout_s`` for it to exit.

    A stale pid file is removed and reported as nothing running. Once the
    process is gone its pid file is removed if it did not remove it itself.
    """
    info = read(data_dir)
    if info is None or not alive(info):
        if path(data_dir).exists():
            remove(data_dir, info.pid if info is not None else None)
        return StopResult(None, stopped=False, stale=info)
    started = clock()
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        remove(data_dir, info.pid)
        return StopResult(info, stopped=True)
    while alive(info):
        waited = clock() - started
        if waited >= timeout_s:
            return StopResult(info, stopped=False, waited_s=waited)
        time.sleep(poll_s)
    remove(data_dir, info.pid)
    return StopResult(info, stopped=True, waited_s=clock() - started)


def handles_signal(pid: int, sig: signal.Signals) -> bool | None:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` in
    ``/proc/<pid>/status``); None where that cannot be told (no /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            try:
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
            except (IndexError, ValueError):
                return None
    return None


@dataclass(frozen=True)
class ReloadResult:
    """What `salon reload` did."""

    info: PidInfo | None  # None: nothing was running
    sent: bool  # False with ``info``: the process has no SIGHUP handler, so it was spared
    stale: PidInfo | None = None  # a pid file of a process that is gone (now removed)


def reload(data_dir: Path) -> ReloadResult:
    """Send SIGHUP to the process of ``data_dir`` so it re-reads its config.

    SIGHUP's default action ends a process: one that does not catch it (a gateway
    from before hot reload, as far as ``/proc`` tells) is not sent it.
    """
    info = read(data_dir)
    if info is None or not alive(info):
        if path(data_dir).exists():
            remove(data_dir, info.pid if info is not None else None)
        return ReloadResult(None, sent=False, stale=info)
    if handles_signal(info.pid, signal.SIGHUP) is False:
        return ReloadResult(info, sent=False)
    try:
        os.kill(info.pid, signal.SIGHUP)
    except ProcessLookupError:
        remove(data_dir, info.pid)
        return ReloadResult(None, sent=False, stale=info)
    return ReloadResult(info, sent=True)
