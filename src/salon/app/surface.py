"""Starting the HTTP surface of a running gateway (when ``api:`` is configured).

Its bearer token is the value of ``api.token_env``, or, with ``token_env: null``, a
random one made here for this run (``ApiServer.token``, which `salon run` writes
to ``<data_dir>/api.json``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp

from salon._exceptions import ConfigError, MatrixError
from salon.api.context import ApiContext
from salon.api.server import ApiServer
from salon.config.models import ApiConfig
from salon.ids import UserId
from salon.matrix.api import MatrixAPI


def api_secret(name: str | None, key: str, given: Mapping[str, str]) -> str | None:
    """The value of the variable ``name``: from ``given`` (what the process handed the
    gateway directly, never put in the environment), else from the environment."""
    if not name:
        return None
    value = given.get(name) or os.environ.get(name)
    if not value:
        raise ConfigError(f"{key}: environment variable {name} is not set", path=key)
    return value


@asynccontextmanager
async def serving_api(
    config: ApiConfig,
    homeserver_url: str,
    session: aiohttp.ClientSession,
    context: ApiContext,
    given: Mapping[str, str],
    device: Callable[[MatrixAPI], Awaitable[object]] | None = None,
) -> AsyncIterator[ApiServer]:
    """The HTTP API over ``context`` (the running gateway, as the API sees it),
    listening until the step ends. ``device`` gives the operator its encryption
    device (its sends into encrypted rooms are then encrypted)."""
    # Never an open API: without `token_env`, a random token for this run (`salon run`
    # writes it to <data_dir>/api.json, where the CLI finds it).
    token = api_secret(config.token_env, "api.token_env", given) or secrets.token_urlsafe(32)
    operator = None
    if config.operator_user_id:
        operator_token = api_secret(config.operator_token_env, "api.operator_token_env", given)
        if operator_token is None:
            raise ConfigError("api.operator_token_env: required with api.operator_user_id")
        operator = MatrixAPI(
            homeserver_url, UserId(config.operator_user_id), operator_token, session=session
        )
        if device is not None:
            try:
                await device(operator)
            except MatrixError as e:
                # Never a plaintext fallback: without its device it would post in clear.
                raise ConfigError(
                    f"api.operator_user_id: {config.operator_user_id} cannot get an"
                    f" encryption device: {e}",
                    path="api.operator_user_id",
                ) from e
    router_api = context.router_api

    async def homeserver_ok() -> bool:
        try:
            await asyncio.wait_for(router_api.whoami(), timeout=3)
        except (MatrixError, TimeoutError):
            return False
        return True

    context = replace(context, operator=operator, homeserver_ok=homeserver_ok)
    server = ApiServer(config, context, token)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
