"""The registration file of Salon as an application service.

A homeserver loads it (Synapse: ``app_service_config_files``) and then pushes
every event of the namespace to the gateway and lets it act as those users with
the ``as_token``. The namespace is exclusive: nobody else may register a user
whose localpart matches the agents' naming pattern.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

import yaml

from salon._exceptions import ConfigError
from salon.config.models import AppserviceConfig, SalonConfig

# What end-to-end encryption in appservice mode asks of the homeserver (Synapse reads
# these keys): to-device messages and ephemeral events in transactions (MSC2409/MSC4203),
# device lists and one-time key counts in transactions and requests as a device
# (MSC3202), and devices made with PUT /devices/{id} (MSC4190). Synapse also needs its
# experimental_features turned on (see salon.devserver.synapse_config).
ENCRYPTION_OPT_INS: dict[str, bool] = {
    "receive_ephemeral": True,
    "de.sorunome.msc2409.push_ephemeral": True,
    "org.matrix.msc3202": True,
    "io.element.msc4190": True,
}


def new_tokens() -> tuple[str, str]:
    """A fresh (as_token, hs_token) pair."""
    return secrets.token_urlsafe(32), secrets.token_urlsafe(32)


def user_regexes(config: SalonConfig, server_name: str) -> list[str]:
    """The agents' localparts as regexes: the naming pattern (``salon_{id}`` →
    ``@salon_.+:server``), plus each agent whose localpart the pattern misses."""
    server = re.escape(server_name)
    before, _, after = config.naming.agent_localpart.partition("{id}")
    pattern = f"@{re.escape(before)}.+{re.escape(after)}:{server}"
    regexes = [pattern]
    for agent_id in config.agents:
        user_id = str(config.agent_user_id(agent_id, server_name))
        if not re.fullmatch(pattern, user_id):
            regexes.append(re.escape(user_id))
    return regexes


def alias_regexes(config: SalonConfig, server_name: str) -> list[str]:
    """The aliases Salon makes (the homeserver lets an appservice's users make only
    those of its namespace): agent rooms by pattern, the Space and the lobby."""
    server = re.escape(server_name)
    before, _, after = config.naming.agent_room_alias.partition("{id}")
    return [
        f"#{re.escape(before)}.+{re.escape(after)}:{server}",
        f"#{re.escape(config.space.alias)}:{server}",
        f"#{re.escape(config.naming.lobby_alias)}:{server}",
    ]


def registration(config: SalonConfig, as_token: str, hs_token: str) -> dict[str, Any]:
    """The registration document for ``config``'s appservice."""
    hs = config.homeserver
    if hs is None:
        raise ConfigError("homeserver: required (url, server_name)", path="homeserver")
    appservice = hs.appservice or AppserviceConfig()
    return {
        "id": appservice.id,
        "url": appservice.public_url,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": config.router.localpart,
        "namespaces": {
            "users": [
                {"exclusive": True, "regex": r} for r in user_regexes(config, hs.server_name)
            ],
            "aliases": [
                {"exclusive": True, "regex": r} for r in alias_regexes(config, hs.server_name)
            ],
            "rooms": [],
        },
        # An agent fleet must never be throttled by the homeserver.
        "rate_limited": False,
        **ENCRYPTION_OPT_INS,
    }


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds both tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new file, owner-only from its first byte, renamed over the old one: an existing
    # file's looser mode (or a link in its place) never sees the tokens.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_registration(
    config: SalonConfig, path: Path, env_path: Path, tokens: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Write the registration to ``path`` and the token variables to ``env_path``
    (``NAME=value`` lines), both owner-only; returns the registration."""
    hs = config.homeserver
    appservice = (hs.appservice if hs else None) or AppserviceConfig()
    as_token, hs_token = tokens or new_tokens()
    document = registration(config, as_token, hs_token)
    write_private(path, yaml.safe_dump(document, sort_keys=False))
    env = f"{appservice.as_token_env}={as_token}\n{appservice.hs_token_env}={hs_token}\n"
    write_private(env_path, env)
    return document
