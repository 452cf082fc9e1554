"""``<data-dir>/api.json``: where the running gateway's HTTP API listens, and its token.

`salon up` (always) and `salon run` (when the config has ``api:``) write it once
the server listens, so the URL carries the real port; both remove it when they
exit cleanly. The CLI reads it to talk to the gateway over HTTP. It holds a
bearer token, so it is written readable by the owner only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from salon._exceptions import ConfigError

FILENAME = "api.json"


class ApiFile(BaseModel):
    """The API's base URL, its bearer token, the pid of the process serving it and the
    dashboard's one-time login link (a file without a token is from before every API
    had one)."""

    model_config = ConfigDict(frozen=True)

    url: str
    token: str | None = None
    pid: int | None = None
    # A one-time link that logs a browser into the dashboard (spent once opened).
    dashboard_url: str | None = None

    @classmethod
    def load(cls, data_dir: Path) -> ApiFile | None:
        """Read it; None if there is none.

        Raises:
            ConfigError: the file is there but unreadable.
        """
        path = data_dir / FILENAME
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read it: {e}", path=str(path)) from e
        try:
            return cls.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as e:
            raise ConfigError(f"{path}: unreadable API file: {e}", path=str(path)) from e

    def save(self, data_dir: Path) -> Path:
        """Write it atomically, readable by the owner only at every instant: it holds
        a token. A fresh temporary file is created 0600 (never an older file's bits),
        then renamed over the old one."""
        path = data_dir / FILENAME
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{FILENAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.model_dump_json(indent=2))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return path


def remove(data_dir: Path, pid: int | None = None) -> None:
    """Remove the file (only if process ``pid`` wrote it, when a pid is given)."""
    path = data_dir / FILENAME
    if pid is not None:
        with contextlib.suppress(ConfigError):
            current = ApiFile.load(data_dir)
            if current is not None and current.pid not in (None, pid):
                return  # another process's: leave it alone
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server listening on ``host:port``.

    A server on every address (``0.0.0.0``, ``::``) is reached through loopback.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"
    if address.is_unspecified:
        host = "::1" if address.version == 6 else "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
