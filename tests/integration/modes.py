"""Both homeserver modes for one test: a config and a Synapse that fit each other.

``client``: the session's Synapse, agents log in. ``appservice``: a Synapse of the
test's own, started with the registration `salon appservice register` would write
for the test's config (it must be in Synapse's config when it starts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from salon.config.models import SalonConfig
from salon.devserver.appservice import write_registration
from salon.devserver.synapse import free_port

from ..conftest import TestHomeserver, register_user
from .conftest import Person, salon_config

TOKENS = ("as-token-" + "a" * 24, "hs-token-" + "b" * 24)
SECRETS = {"SALON_AS_TOKEN": TOKENS[0], "SALON_HS_TOKEN": TOKENS[1]}
MODES = ("client", "appservice")


def appservice_config(tmp_path: Path, port: int, hs: Any, **overrides: Any) -> SalonConfig:
    """The test's config in appservice mode on ``hs`` (a placeholder before it runs)."""
    config = salon_config(hs, tmp_path, **overrides)
    data = config.model_dump(mode="json", exclude_none=True)
    data["homeserver"] = {
        "url": hs.base_url,
        "server_name": hs.server_name,
        "mode": "appservice",
        "appservice": {"listen": f"127.0.0.1:{port}"},
    }
    return SalonConfig.model_validate(data)


def with_overrides(config: SalonConfig, **overrides: Any) -> SalonConfig:
    """``config`` with sections replaced (mappings merged one level, as salon_config does)."""
    data = config.model_dump(mode="json", exclude_none=True)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "agents":
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return SalonConfig.model_validate(data)


@dataclass
class Deployment:
    """A homeserver, the mode Salon runs in on it, and its base config."""

    mode: str
    hs: TestHomeserver
    base: SalonConfig
    secrets: dict[str, str] = field(default_factory=dict)

    def config(self, **overrides: Any) -> SalonConfig:
        """The base config with ``overrides`` (its namespace and mode kept)."""
        return with_overrides(self.base, **overrides)

    async def person(self, http: aiohttp.ClientSession) -> Person:
        """A fresh human user on this homeserver."""
        return Person(await register_user(self.hs), self.hs.base_url, http)


def appservice_deployment(
    tmp_path: Path, start: Callable[..., TestHomeserver], **synapse: Any
) -> Deployment:
    """A Synapse started by ``start`` with the registration of a fresh appservice config."""
    port = free_port()
    placeholder = SimpleNamespace(
        base_url="http://127.0.0.1:9", server_name="localhost", shared_secret=""
    )
    draft = appservice_config(tmp_path, port, placeholder)
    registration = tmp_path / "registration.yaml"
    write_registration(draft, registration, tmp_path / "registration.env", TOKENS)
    hs = start(app_service_config_files=(registration,), **synapse)
    data = draft.model_dump(mode="json", exclude_none=True)
    data["homeserver"]["url"] = hs.base_url
    return Deployment("appservice", hs, SalonConfig.model_validate(data), dict(SECRETS))


def client_deployment(tmp_path: Path, hs: TestHomeserver) -> Deployment:
    """Client mode on ``hs``."""
    return Deployment("client", hs, salon_config(hs, tmp_path))
