"""The files of an embedded local Synapse: homeserver.yaml, its log config, its key.

:func:`write_synapse_config` lays out a throwaway homeserver under
``<data_dir>/synapse`` (SQLite, loopback only, shared-secret registration, rate
limits raised so an agent fleet is never throttled). Everything Synapse needs
lives below the layout's root, with absolute paths in the config, so the server
can be started from any working directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from salon._exceptions import DevServerError

_STATE_FILE = "devserver.json"
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
    app_service_config_files: tuple[Path, ...] = ()
    """Appservice registrations the homeserver loads (read at its start)."""


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
    if settings.app_service_config_files:
        config["app_service_config_files"] = [str(p) for p in settings.app_service_config_files]
        # The appservice extensions its users' encryption devices need (MSC4190 is
        # opted into by the registration alone).
        config["experimental_features"] = {
            "msc2409_to_device_messages_enabled": True,
            "msc3202_transaction_extensions": True,
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
