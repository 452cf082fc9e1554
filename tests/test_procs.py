"""Whether a process still runs: one answer for pid files, the published gateway
status and the embedded homeserver's leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from salon.procs import pid_alive


def test_this_process_runs_and_absurd_pids_do_not() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(2**62)  # beyond any pid: no OverflowError escapes


@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombies are read from /proc")
def test_an_ended_child_not_yet_reaped_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    # Not waited for: once it ends it is a zombie, and the signal still reaches it.
    while pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(child.pid)
    os.kill(child.pid, 0)  # the zombie is still there: only the /proc check saw it end
    child.wait()
    assert not pid_alive(child.pid)
