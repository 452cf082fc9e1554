"""Run an MCP server command that dies with the gateway: ``python -m salon.agents.mcp_watchdog
<gateway pid> cmd args…``.

Sets PR_SET_PDEATHSIG (SIGKILL) and then execs the command, so the server (the
gateway's direct child) is killed by the kernel when the gateway dies, even by
kill -9, which no stop code can catch. Elsewhere than Linux it only execs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    """Arm the death signal, check the gateway still lives, exec the command."""
    if len(argv) < 2:
        sys.exit("usage: python -m salon.agents.mcp_watchdog <gateway pid> command [args…]")
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the gateway died before the signal was armed
            sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
