"""`salon up --mode appservice`: the embedded Synapse loads Salon's registration.

Each start writes a fresh registration (new tokens, the namespace of the config as
it is now, a free loopback port for the listener) under ``<data_dir>/appservice``,
owner-only; the tokens reach the gateway directly (``Gateway(secrets=…)``), never
through the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from salon.config.models import AppserviceConfig, HomeserverConfig, SalonConfig
from salon.devserver.appservice import new_tokens, write_registration
from salon.devserver.synapse_config import free_port

AS_TOKEN_ENV = "SALON_UP_AS_TOKEN"
HS_TOKEN_ENV = "SALON_UP_HS_TOKEN"


@dataclass(frozen=True)
class LocalAppservice:
    """The embedded appservice: its settings, registration file and tokens."""

    settings: AppserviceConfig
    registration: Path
    secrets: dict[str, str] = field(repr=False)


def local_appservice(config: SalonConfig, data_dir: Path, server_name: str) -> LocalAppservice:
    """Write the registration for ``config`` on the embedded homeserver."""
    settings = AppserviceConfig(
        as_token_env=AS_TOKEN_ENV,
        hs_token_env=HS_TOKEN_ENV,
        listen=f"127.0.0.1:{free_port()}",
    )
    homeserver = HomeserverConfig(
        url="http://127.0.0.1:8008",  # not in the registration: a placeholder
        server_name=server_name,
        mode="appservice",
        appservice=settings,
    )
    as_token, hs_token = new_tokens()
    folder = data_dir / "appservice"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    registration = folder / "registration.yaml"
    write_registration(
        config.model_copy(update={"homeserver": homeserver}),
        registration,
        folder / "registration.yaml.env",
        (as_token, hs_token),
    )
    return LocalAppservice(
        settings, registration.resolve(), {AS_TOKEN_ENV: as_token, HS_TOKEN_ENV: hs_token}
    )
