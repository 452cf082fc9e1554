"""Child processes that die with their parent, and stale ones found by pid file."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from salon._exceptions import DevServerError
from salon.devserver.synapse_config import SynapseLayout
from salon.procs import pid_alive

_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``Popen`` from a thread that lives as long as this process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, so a
    child forked from a short-lived worker thread (``asyncio.to_thread``) would be
    killed with it. The main thread forks directly; other threads hand the fork to
    one long-lived spawner thread.
    """

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, **kwargs)

    if threading.current_thread() is threading.main_thread():
        return popen()
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salon-spawner")
        spawner = _spawner
    return spawner.submit(popen).result()


def _death_signal_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get SIGTERM when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def preexec() -> None:  # runs in the forked child: keep it tiny
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _terminate_stale(layout: SynapseLayout, timeout: float = 10.0) -> None:
    """Stop a Synapse left running on this layout by an earlier, vanished owner."""
    pid = _read_pid(layout.pid_file)
    if pid is None or pid == os.getpid():
        return
    if pid_alive(pid) and _is_our_synapse(pid, layout):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            if not _wait_gone(pid, timeout):
                raise DevServerError(f"a stale Synapse (pid {pid}) on {layout.root} will not die")
    with contextlib.suppress(OSError):
        layout.pid_file.unlink()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="],
            capture_output=True,
            check=False,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.decode(errors="replace")


def _is_our_synapse(pid: int, layout: SynapseLayout) -> bool:
    """A Synapse process started with this layout's config (not merely any Synapse)."""
    cmdline = _cmdline(pid)
    return "synapse" in cmdline and str(layout.config_path) in cmdline


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
