"""``<data-dir>/operator.json``: how the CLI (or any script) acts as the operator."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from salon._exceptions import ConfigError

FILENAME = "operator.json"


class OperatorFile(BaseModel):
    """Homeserver, operator credentials and the deployment's room aliases."""

    model_config = ConfigDict(frozen=True)

    homeserver_url: str
    server_name: str
    user_id: str
    password: str
    access_token: str
    device_id: str = ""
    space_alias: str
    lobby_alias: str
    agent_rooms: dict[str, str] = {}

    @classmethod
    def load(cls, data_dir: Path) -> OperatorFile:
        """Read it; a clear ConfigError if it is missing or broken."""
        path = data_dir / FILENAME
        if not path.exists():
            raise ConfigError(
                f"{path}: not found. Start Salon with `salon up --data-dir {data_dir}` first.",
                path=str(path),
            )
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as e:
            raise ConfigError(f"{path}: unreadable operator file: {e}", path=str(path)) from e

    def save(self, data_dir: Path) -> Path:
        """Write it readable by the owner only (it holds a password and a token)."""
        path = data_dir / FILENAME
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.model_dump_json(indent=2))
        tmp.replace(path)
        return path


def previous_device(data_dir: Path, localpart: str) -> str | None:
    """The device the operator ``localpart`` had at the last `salon up` in
    ``data_dir``: logging in to it again keeps one encryption device across runs."""
    try:
        op = OperatorFile.load(data_dir)
    except ConfigError:
        return None
    same = op.user_id.lower().startswith(f"@{localpart.lower()}:")
    return op.device_id or None if same else None
