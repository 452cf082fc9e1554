"""Appservice mode for ``bench/scale_hosting.py``: the registrations Synapse loads,
the gateway's config, and the raw mautrix appservice that is the baseline.

Two registrations are written before Synapse starts (it reads them only then):

- Salon's: sender ``bas<run>`` (the router of every count), users ``@bas<run>-…``,
  aliases ``#bas<run>-…``, pushed to a loopback port the gateway listens on;
- the baseline's: sender ``raw<run>``, users ``@raw<run>-…``, aliases ``#raw<run>-…``,
  no URL (it only acts, nothing is pushed to it).

Both exclusive and not rate-limited, as ``salon appservice register`` writes them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from mautrix.appservice import AppServiceAPI, ASStateStore, IntentAPI
from mautrix.client.state_store import MemoryStateStore
from mautrix.types import EventType, RoomAlias, RoomID, UserID

from salon.config.models import AppserviceConfig, SalonConfig
from salon.devserver.appservice import new_tokens, write_private
from salon.devserver.synapse import SynapseLayout
from salon.devserver.synapse_config import free_port

AS_TOKEN_ENV = "BENCH_AS_TOKEN"
HS_TOKEN_ENV = "BENCH_HS_TOKEN"


@dataclass(frozen=True)
class Registrations:
    """What Synapse was started with, for both appservices of one run."""

    run: str
    port: int
    files: list[Path]
    tokens: tuple[str, str] = field(repr=False)  # Salon's (as_token, hs_token)
    raw_token: str = field(repr=False)

    @property
    def secrets(self) -> dict[str, str]:
        """The token variables, given to the gateway directly."""
        return {AS_TOKEN_ENV: self.tokens[0], HS_TOKEN_ENV: self.tokens[1]}


def _registration(
    prefix: str, tokens: tuple[str, str], url: str | None, server: str
) -> dict[str, Any]:
    name = re.escape(server)
    return {
        "id": prefix,
        "url": url,
        "as_token": tokens[0],
        "hs_token": tokens[1],
        "sender_localpart": prefix,
        "namespaces": {
            "users": [{"exclusive": True, "regex": f"@{prefix}-.+:{name}"}],
            "aliases": [{"exclusive": True, "regex": f"#{prefix}-.+:{name}"}],
            "rooms": [],
        },
        "rate_limited": False,
    }


def write_registrations(data_dir: Path, server_name: str) -> Registrations:
    """Salon's and the baseline's registration files, in ``data_dir``."""
    run = secrets.token_hex(3)
    port = free_port()
    salon, raw = new_tokens(), new_tokens()
    files = []
    for prefix, tokens, url in (
        (f"bas{run}", salon, f"http://127.0.0.1:{port}"),
        (f"raw{run}", raw, None),
    ):
        path = data_dir / f"registration-{prefix}.yaml"
        document = _registration(prefix, tokens, url, server_name)
        write_private(path, yaml.safe_dump(document, sort_keys=False))
        files.append(path)
    return Registrations(run, port, files, salon, raw[0])


def appservice_config(config: SalonConfig, reg: Registrations) -> SalonConfig:
    """``config`` (of ``common.salon_config``) in appservice mode: its names moved into
    Salon's namespace, the router the registration's sender."""
    hs = config.homeserver
    assert hs is not None
    ns = config.space.alias.removeprefix("bench-")
    base = f"bas{reg.run}-{ns}"
    settings = AppserviceConfig(
        id=f"bas{reg.run}",
        as_token_env=AS_TOKEN_ENV,
        hs_token_env=HS_TOKEN_ENV,
        listen=f"127.0.0.1:{reg.port}",
    )
    naming = config.naming.model_copy(
        update={
            "agent_localpart": f"{base}_{{id}}",
            "agent_room_alias": f"{base}-{{id}}",
            "lobby_alias": f"{base}-lobby",
        }
    )
    return config.model_copy(
        update={
            "homeserver": hs.model_copy(update={"mode": "appservice", "appservice": settings}),
            "router": config.router.model_copy(update={"localpart": f"bas{reg.run}"}),
            "space": config.space.model_copy(update={"alias": base}),
            "naming": naming,
        }
    )


class _MemoryASStore(MemoryStateStore, ASStateStore):
    """mautrix's in-memory state store, with the appservice's registered-user set."""

    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


async def raw_baseline(
    layout: SynapseLayout, http: aiohttp.ClientSession, n: int, operator: str, reg: Registrations
) -> tuple[float, list[tuple[str, Any]]]:
    """What Salon's cold start does on the homeserver, by a raw mautrix appservice
    (``IntentAPI``): register N users and name them; the sender makes the Space and
    the lobby (inviting the operator, and the agents into the lobby); each user makes
    its room, invites the operator, joins the lobby; the Space lists every room and
    each room names the Space its parent. Seconds taken, and each room with the HTTP
    API its user sends with."""
    ns = secrets.token_hex(3)
    prefix, server = f"raw{reg.run}", layout.server_name
    api = AppServiceAPI(
        layout.base_url,
        UserID(f"@{prefix}:{server}"),
        reg.raw_token,
        log=logging.getLogger("mau.bench"),  # type: ignore[arg-type]
        state_store=_MemoryASStore(),
        client_session=http,
    )
    router = api.bot_intent()
    started = time.perf_counter()

    async def user(i: int) -> IntentAPI:
        intent = api.intent(UserID(f"@{prefix}-{ns}_a{i}:{server}"))
        await intent.ensure_registered()
        await intent.set_displayname(f"Agent {i}")
        return intent

    users = await asyncio.gather(*(user(i) for i in range(n)))
    space = await router.create_room(
        alias_localpart=f"{prefix}-{ns}",
        name="Space",
        invitees=[UserID(operator)],
        creation_content={"type": "m.space"},
    )
    lobby = await router.create_room(
        alias_localpart=f"{prefix}-{ns}-lobby",
        name="Lobby",
        invitees=[UserID(operator), *(u.mxid for u in users)],
    )

    async def agent_room(intent: IntentAPI, i: int) -> RoomID:
        room = await intent.create_room(
            alias_localpart=f"{prefix}-{ns}-a{i}", name=f"Agent {i}", topic="an agent's room"
        )
        await intent.join_room(RoomAlias(f"#{prefix}-{ns}-lobby:{server}"), servers=[server])
        await intent.invite_user(room, UserID(operator))
        return room

    rooms = await asyncio.gather(*(agent_room(u, i) for i, u in enumerate(users)))
    via = {"via": [server]}
    child = EventType.find("m.space.child", EventType.Class.STATE)
    parent = EventType.find("m.space.parent", EventType.Class.STATE)
    await router.send_state_event(space, child, via, state_key=lobby)
    for intent, room in zip(users, rooms, strict=True):
        await router.send_state_event(space, child, via, state_key=room)
        await intent.send_state_event(room, parent, via, state_key=space)
    took = time.perf_counter() - started
    return took, [(str(room), intent.api) for intent, room in zip(users, rooms, strict=True)]
