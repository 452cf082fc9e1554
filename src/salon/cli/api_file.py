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
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from salon._exceptions import ConfigError

FILENAME = "api.json"


class ApiFile(BaseModel):
    """The API's base URL, its bearer token (None: the server takes none) and the pid
    of the process serving it."""

    model_config = ConfigDict(frozen=True)

    url: str
    token: str | None = None
    pid: int | None = None

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
        """Write it (atomically) readable by the owner only: it holds a token."""
        path = data_dir / FILENAME
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.model_dump_json(indent=2))
        os.chmod(tmp, 0o600)  # an older file of that name may have had other bits
        tmp.replace(path)
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
