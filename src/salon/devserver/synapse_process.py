"""Running an embedded Synapse as a child process of the current Python.

:class:`SynapseProcess` runs the homeserver that
:func:`~salon.devserver.synapse_config.write_synapse_config` laid out, and
:func:`running_synapse` does both for the length of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from salon._exceptions import DevServerError
from salon.devserver.processes import _death_signal_preexec, _read_pid, _spawn, _terminate_stale
from salon.devserver.synapse_config import (
    _INSTALL_HINT,
    SynapseLayout,
    SynapseSettings,
    _write_private,
    write_synapse_config,
)

_TAIL_LINES = 20
_POLL_INTERVAL_S = 0.1


class SynapseProcess:
    """One Synapse child process for a written :class:`SynapseLayout`.

    ``start()`` and ``stop()`` block; use ``asyncio.to_thread`` from async code.
    On Linux the child gets ``SIGTERM`` if this process dies (even by ``SIGKILL``),
    so a crashed gateway or test run leaves no orphan homeserver behind.
    """

    def __init__(self, layout: SynapseLayout) -> None:
        self.layout = layout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid while one was started (even if it has exited since)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start Synapse and block until it answers ``/_matrix/client/versions``.

        A live Synapse named by the pid file (left over from a crashed run on this
        layout) is terminated first. Does nothing if this object's child runs.

        Raises:
            DevServerError: matrix-synapse is not installed, the port is taken,
                the process exited early, or it was not ready within ``timeout``.
                The message carries the tail of the logs.
        """
        if self.running:
            return
        if importlib.util.find_spec("synapse") is None:
            raise DevServerError(f"matrix-synapse is not installed; {_INSTALL_HINT}")
        layout = self.layout
        _terminate_stale(layout)
        if _port_open(layout.host, layout.port):
            raise DevServerError(
                f"cannot start Synapse: something already listens on {layout.base_url} "
                "(another homeserver or `salon up`?); pick another port"
            )
        log_offset = _file_size(layout.log_file)
        args = [sys.executable, "-m", "synapse.app.homeserver", "-c", str(layout.config_path)]
        try:
            with open(layout.stdout_log, "wb") as out:
                self._proc = _spawn(
                    args,
                    cwd=layout.root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                    # Own session: Ctrl-C reaches Salon only, which then stops the
                    # gateway (agents say offline) before stopping Synapse. The death
                    # signal still takes Synapse down if Salon is killed outright.
                    start_new_session=True,
                    preexec_fn=_death_signal_preexec(),
                )
        except OSError as exc:
            raise DevServerError(f"could not run {sys.executable} for Synapse: {exc}") from exc
        _write_private(layout.pid_file, f"{self._proc.pid}\n")
        self._wait_ready(timeout, log_offset)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child: ``SIGTERM``, then ``SIGKILL`` after ``timeout`` s. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        if _read_pid(self.layout.pid_file) == proc.pid:
            with contextlib.suppress(OSError):
                self.layout.pid_file.unlink()

    def __enter__(self) -> SynapseProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_ready(self, timeout: float, log_offset: int) -> None:
        assert self._proc is not None
        url = f"{self.layout.base_url}/_matrix/client/versions"
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise DevServerError(
                    f"Synapse exited with status {code} during startup "
                    f"(config {self.layout.config_path}).\n{self._log_tail(log_offset)}"
                )
            if _http_ok(url):
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise DevServerError(
                    f"Synapse did not answer {url} within {timeout:.0f} s.\n"
                    f"{self._log_tail(log_offset)}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _log_tail(self, log_offset: int) -> str:
        parts = []
        for path, offset in ((self.layout.log_file, log_offset), (self.layout.stdout_log, 0)):
            lines = _tail(path, offset)
            if lines:
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(lines))
        return "\n".join(parts) or "(Synapse wrote no log output)"


@contextlib.contextmanager
def running_synapse(settings: SynapseSettings, timeout: float = 60.0) -> Iterator[SynapseLayout]:
    """Write the config, start Synapse, yield its layout, and always stop it."""
    layout = write_synapse_config(settings)
    process = SynapseProcess(layout)
    try:
        process.start(timeout)
        yield layout
    finally:
        process.stop()


# --- probing and logs -----------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_open(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, offset: int = 0, lines: int = _TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``path`` written after byte ``offset``."""
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            start = offset if offset <= size else 0  # the log rotated since
            stream.seek(max(start, size - 64 * 1024))
            data = stream.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]
