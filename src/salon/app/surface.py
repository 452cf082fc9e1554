"""Starting the HTTP surface of a running gateway (when ``api:`` is configured).

Its bearer token is the value of ``api.token_env``, or, with ``token_env: null``, a
random one made here for this run (``ApiServer.token``, which `salon run` writes
to ``<data_dir>/api.json``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import aiohttp

from salon._exceptions import ConfigError, MatrixError
from salon.api.context import ApiContext
from salon.api.server import ApiServer
from salon.config.models import ApiConfig
from salon.coordination.delegation import DelegationManager
from salon.ids import UserId
from salon.matrix.api import MatrixAPI
from salon.routing.router import Router
from salon.turns.runner import TurnRunner

if TYPE_CHECKING:
    from salon.app.gateway import Gateway


def api_secret(name: str | None, key: str, given: Mapping[str, str]) -> str | None:
    """The value of the variable ``name``: from ``given`` (what the process handed the
    gateway directly, never put in the environment), else from the environment."""
    if not name:
        return None
    value = given.get(name) or os.environ.get(name)
    if not value:
        raise ConfigError(f"{key}: environment variable {name} is not set", path=key)
    return value


async def start_api(
    gateway: Gateway,
    config: ApiConfig,
    session: aiohttp.ClientSession | None,
    runner: TurnRunner,
    router: Router | None,
    delegations: DelegationManager,
) -> ApiServer:
    """Build the API's view of ``gateway`` and start listening."""
    state, roster, store, hs = (
        gateway.state,
        gateway.roster,
        gateway.store,
        gateway.config.homeserver,
    )
    assert state is not None and roster is not None and store is not None and hs is not None
    assert session is not None and router is not None
    # Never an open API: without `token_env`, a random token for this run (`salon run`
    # writes it to <data_dir>/api.json, where the CLI finds it).
    token = api_secret(config.token_env, "api.token_env", gateway.secrets) or secrets.token_urlsafe(
        32
    )
    operator = None
    if config.operator_user_id:
        operator_token = api_secret(
            config.operator_token_env, "api.operator_token_env", gateway.secrets
        )
        if operator_token is None:
            raise ConfigError("api.operator_token_env: required with api.operator_user_id")
        operator = MatrixAPI(
            hs.url, UserId(config.operator_user_id), operator_token, session=session
        )

    async def homeserver_ok() -> bool:
        try:
            await asyncio.wait_for(state.router.whoami(), timeout=3)
        except (MatrixError, TimeoutError):
            return False
        return True

    ctx = ApiContext(
        gateway=gateway.name,
        roster=roster,
        store=store,
        runner=runner,
        router=router,
        delegations=delegations,
        router_api=state.router,
        # The live maps, not copies: agents a reload adds are reachable through the API.
        agent_apis=cast("dict[str, MatrixAPI]", state.agent_apis),
        agent_rooms=cast("dict[str, str]", state.topology.agent_rooms),
        lobby_id=str(state.topology.lobby_id),
        loops=gateway.loops,
        operator=operator,
        locale=gateway.config.locale,
        homeserver_ok=homeserver_ok,
        spawn=gateway.spawn_session,
    )
    server = ApiServer(config, ctx, token)
    await server.start()
    return server
