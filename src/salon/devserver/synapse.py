"""An embedded local Synapse for ``salon up`` and the integration tests.

:func:`write_synapse_config` lays out a throwaway homeserver under
``<data_dir>/synapse`` (SQLite, loopback only, shared-secret registration, rate
limits raised so an agent fleet is never throttled), and :class:`SynapseProcess`
runs it as a child process of the current Python.

Everything Synapse needs lives below the layout's root, with absolute paths in the
config, so the server can be started from any working directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from salon._exceptions import DevServerError

__all__ = [
    "SynapseLayout",
    "SynapseProcess",
    "SynapseSettings",
    "free_port",
    "relaxed_rate_limits",
    "running_synapse",
    "write_synapse_config",
]

_STATE_FILE = "devserver.json"
_TAIL_LINES = 20
_POLL_INTERVAL_S = 0.1
_INSTALL_HINT = "install the local extra: pip install 'salon[local]'"

# A bucket this large never empties in practice: ~a million actions per second.
_UNLIMITED: dict[str, float] = {"per_second": 1_000_000, "burst_count": 1_000_000}


@dataclass(frozen=True)
class SynapseSettings:
    """What to lay out: where, under which server name, on which port."""

    data_dir: Path
    """Everything is written under ``data_dir / "synapse"``."""
    server_name: str = "localhost"
    host: str = "127.0.0.1"
    """Loopback only; anything else is refused."""
    port: int | None = 8008
    """``None`` reuses the port of an earlier layout in ``data_dir``, else a free one."""
    rate_limit_overrides: dict[str, Any] | None = None
    """Merged over the relaxed ``rc_*`` blocks (top-level keys replace)."""


@dataclass(frozen=True)
class SynapseLayout:
    """Where a written homeserver lives and how to reach it."""

    root: Path
    config_path: Path
    log_config_path: Path
    log_file: Path
    database_path: Path
    pid_file: Path
    media_store: Path
    signing_key_path: Path
    base_url: str
    server_name: str
    registration_shared_secret: str = field(repr=False)

    @property
    def stdout_log(self) -> Path:
        """Where the child's stdout and stderr go (startup errors land here)."""
        return self.root / "stdout.log"

    @property
    def state_file(self) -> Path:
        """Persisted secret and port, so a rewrite keeps both."""
        return self.root / _STATE_FILE

    @property
    def port(self) -> int:
        """The TCP port of the client listener."""
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def host(self) -> str:
        """The loopback address the listener binds (without IPv6 brackets)."""
        return self.base_url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nobody listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def relaxed_rate_limits() -> dict[str, Any]:
    """Every ``rc_*`` block the installed Synapse knows, raised out of reach."""
    return {
        "rc_message": dict(_UNLIMITED),
        "rc_registration": dict(_UNLIMITED),
        "rc_registration_token_validity": dict(_UNLIMITED),
        "rc_login": {
            "address": dict(_UNLIMITED),
            "account": dict(_UNLIMITED),
            "failed_attempts": dict(_UNLIMITED),
        },
        "rc_admin_redaction": dict(_UNLIMITED),
        "rc_joins": {"local": dict(_UNLIMITED), "remote": dict(_UNLIMITED)},
        "rc_joins_per_room": dict(_UNLIMITED),
        "rc_key_requests": dict(_UNLIMITED),
        "rc_3pid_validation": dict(_UNLIMITED),
        "rc_invites": {
            "per_room": dict(_UNLIMITED),
            "per_user": dict(_UNLIMITED),
            "per_issuer": dict(_UNLIMITED),
        },
        "rc_third_party_invite": dict(_UNLIMITED),
        "rc_media_create": dict(_UNLIMITED),
        "rc_presence": {"per_user": dict(_UNLIMITED)},
        "rc_delayed_event_mgmt": dict(_UNLIMITED),
        "rc_room_creation": dict(_UNLIMITED),
        "rc_reports": dict(_UNLIMITED),
        "rc_user_directory": dict(_UNLIMITED),
        "rc_profile": dict(_UNLIMITED),
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 1_000_000,
            "sleep_delay": 1,
            "reject_limit": 1_000_000,
            "concurrent": 1_000,
        },
    }


def write_synapse_config(settings: SynapseSettings) -> SynapseLayout:
    """Write (or rewrite) homeserver.yaml, its log config and signing key.

    Idempotent: a second call on the same ``data_dir`` keeps the registration
    shared secret and the port of the first (both persisted in
    ``<root>/devserver.json``), unless ``settings.port`` names another port, which
    then wins. The signing key is generated only when missing; the database and
    media are never touched.

    Raises:
        DevServerError: the host is not a loopback address, or a file could not
            be written.
    """
    _check_loopback(settings.host)
    root = (Path(settings.data_dir) / "synapse").resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
        state = _read_state(root / _STATE_FILE)
        secret = state.get("registration_shared_secret")
        if not isinstance(secret, str) or not secret:
            secret = secrets.token_urlsafe(32)
        port = settings.port
        if port is None:
            saved = state.get("port")
            port = saved if isinstance(saved, int) and saved > 0 else free_port(settings.host)
        url_host = f"[{settings.host}]" if ":" in settings.host else settings.host
        layout = SynapseLayout(
            root=root,
            config_path=root / "homeserver.yaml",
            log_config_path=root / "log_config.yaml",
            log_file=root / "homeserver.log",
            database_path=root / "homeserver.db",
            pid_file=root / "homeserver.pid",
            media_store=root / "media_store",
            signing_key_path=root / f"{settings.server_name}.signing.key",
            base_url=f"http://{url_host}:{port}",
            server_name=settings.server_name,
            registration_shared_secret=secret,
        )
        layout.media_store.mkdir(exist_ok=True)
        _write_private(
            layout.state_file,
            json.dumps({"registration_shared_secret": secret, "port": port}, indent=2) + "\n",
        )
        _write_private(layout.log_config_path, _dump_yaml(_log_config(layout)))
        config = _homeserver_config(settings, layout)
        _write_private(layout.config_path, _dump_yaml(config))
        if not layout.signing_key_path.exists():
            _generate_signing_key(layout.signing_key_path)
    except OSError as exc:
        raise DevServerError(f"could not write the Synapse config under {root}: {exc}") from exc
    return layout


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


# --- config -------------------------------------------------------------------


def _homeserver_config(settings: SynapseSettings, layout: SynapseLayout) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server_name": settings.server_name,
        "public_baseurl": layout.base_url + "/",
        "pid_file": str(layout.pid_file),
        "listeners": [
            {
                "port": layout.port,
                "type": "http",
                "bind_addresses": [settings.host],
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(layout.database_path)}},
        "log_config": str(layout.log_config_path),
        "media_store_path": str(layout.media_store),
        "signing_key_path": str(layout.signing_key_path),
        "registration_shared_secret": layout.registration_shared_secret,
        "enable_registration": False,
        "report_stats": False,
        "enable_metrics": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "serve_server_wellknown": False,
        "url_preview_enabled": False,
        "presence": {"enabled": False},
        "bcrypt_rounds": 4,
    }
    config.update(relaxed_rate_limits())
    config.update(settings.rate_limit_overrides or {})
    return config


def _log_config(layout: SynapseLayout) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                "%(request)s - %(message)s"
            }
        },
        "handlers": {
            "file": {
                "class": "logging.handlers.RotatingFileHandler",
                "formatter": "precise",
                "filename": str(layout.log_file),
                "maxBytes": 10 * 1024 * 1024,
                "backupCount": 3,
                "encoding": "utf8",
            }
        },
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "WARNING", "handlers": ["file"]},
    }


def _dump_yaml(data: dict[str, Any]) -> str:
    header = "# Written by salon.devserver.synapse; edits are lost on the next write.\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _generate_signing_key(path: Path) -> None:
    try:
        from signedjson.key import generate_signing_key, write_signing_keys
    except ImportError as exc:
        raise DevServerError(f"matrix-synapse is not installed; {_INSTALL_HINT}") from exc
    key = generate_signing_key("a_" + secrets.token_hex(2))
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        write_signing_keys(stream, [key])
    os.replace(tmp, path)


def _check_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise DevServerError(
            f"the embedded Synapse only binds loopback addresses, not {host!r}; "
            "use 127.0.0.1 or ::1"
        )


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable by the owner only (secrets live here)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(tmp, path)


# --- processes ----------------------------------------------------------------

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
    if _pid_alive(pid) and _is_our_synapse(pid, layout):
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


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not sys.platform.startswith("linux")
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


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
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


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
