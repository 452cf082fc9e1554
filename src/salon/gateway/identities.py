"""The Matrix users a deployment acts as, and how each one logs in."""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass
from typing import Protocol

from salon._exceptions import AuthError, ConfigError, MatrixError
from salon.config.models import HomeserverConfig, IdentityCredentials, SalonConfig
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.login import Authenticator, CredentialSource, CredentialStore


@dataclass(frozen=True)
class IdentitySpec:
    """One identity: its user id, display name, credentials, and whose it is."""

    user_id: UserId
    display_name: str
    source: CredentialSource
    agent_id: AgentId | None = None  # None: the router


def _env(name: str | None, key: str) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(f"{key}: environment variable {name} is not set")
    return value


def _source(hs: HomeserverConfig, creds: IdentityCredentials | None, key: str) -> CredentialSource:
    return CredentialSource(
        access_token=_env(creds.access_token_env, f"{key}.access_token_env") if creds else None,
        password=_env(creds.password_env, f"{key}.password_env") if creds else None,
        device_id=creds.device_id if creds else None,
        shared_secret=hs.registration_shared_secret,
    )


def former_agent(config: SalonConfig, agent_id: AgentId, user_id: UserId | None) -> IdentitySpec:
    """An agent no longer configured (its rooms are handed over): its recorded user id,
    else the one ``naming`` gives it; its stored token, else the shared secret."""
    hs = config.homeserver
    if hs is None:
        raise ConfigError("homeserver: required to run the gateway (url and server_name)")
    return IdentitySpec(
        user_id=user_id or UserId(f"@{config.named_localpart(agent_id)}:{hs.server_name}"),
        display_name=agent_id,
        source=_source(hs, None, f"agents.{agent_id}.matrix"),
        agent_id=agent_id,
    )


async def log_in_former(
    auth: Authenticator,
    credentials: CredentialStore,
    config: SalonConfig,
    agent_id: AgentId,
    user_id: UserId | None,
) -> MatrixAPI:
    """A former agent's API (to hand its rooms over). A user id only guessed from
    ``naming`` is used only if a token for it is stored: the shared secret would
    register a stray account when the agent had a localpart of its own."""
    spec = former_agent(config, agent_id, user_id)
    if user_id is None and not (await credentials.load_credentials(spec.user_id))[1]:
        raise AuthError(f"{spec.user_id}: no stored token for former agent {agent_id!r}")
    return await auth.login(spec.user_id, spec.source)


def identity_specs(config: SalonConfig) -> list[IdentitySpec]:
    """Router first, then one identity per agent."""
    hs = config.homeserver
    if hs is None:
        raise ConfigError("homeserver: required to run the gateway (url and server_name)")
    router = IdentitySpec(
        user_id=UserId(f"@{config.router.localpart}:{hs.server_name}"),
        display_name=config.router.display_name,
        source=_source(hs, config.router.matrix, "router.matrix"),
    )
    specs = [router]
    for agent_id, agent in config.agents.items():
        specs.append(
            IdentitySpec(
                user_id=config.agent_user_id(agent_id, hs.server_name),
                display_name=agent.display_label,
                source=_source(hs, agent.matrix, f"agents.{agent_id}.matrix"),
                agent_id=AgentId(agent_id),
            )
        )
    # An appservice acts as each of its users with its own token: nothing to check.
    for spec in specs if hs.mode == "client" else ():
        s = spec.source
        if not (s.access_token or s.password or s.shared_secret):
            raise ConfigError(
                f"homeserver.registration_shared_secret: no credentials for {spec.user_id}; "
                "set a registration shared secret or the identity's matrix.*_env keys"
            )
    return specs


class ProfileLog(Protocol):
    """Where the profile last applied to each identity is kept (``store.kv``)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...


def profile_key(user_id: UserId) -> str:
    """The key of an identity's applied profile (its display name, notifications muted)."""
    return f"profile:{user_id}"


async def login_all(
    auth: Authenticator,
    specs: list[IdentitySpec],
    *,
    jitter_s: float,
    profiles: ProfileLog | None = None,
) -> dict[UserId, MatrixAPI]:
    """Log every identity in concurrently, each after its own start-up jitter. Its
    display name is set and its notifications muted, unless ``profiles`` says that was
    done already with this name (a restart of a thousand agents spares the homeserver
    two thousand requests)."""

    async def one(spec: IdentitySpec) -> MatrixAPI:
        if jitter_s > 0:
            await asyncio.sleep(random.uniform(0, jitter_s))
        api = await auth.login(spec.user_id, spec.source)
        key = profile_key(spec.user_id)
        if profiles is not None and await profiles.get(key) == spec.display_name:
            return api
        await api.set_displayname(spec.display_name)
        # Nobody reads a bot's notifications: muting them spares the homeserver work
        # on every message in a room with several of our users.
        try:
            await api.mute_notifications()
        except MatrixError:
            return api  # tried again at the next start
        if profiles is not None:
            await profiles.set(key, spec.display_name)
        return api

    apis = await asyncio.gather(*(one(spec) for spec in specs))
    return {api.user_id: api for api in apis}
