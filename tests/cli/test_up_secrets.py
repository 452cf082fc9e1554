"""`salon up` hands the API token and the operator's access token to the gateway itself:
never through the environment, which every backend and child process inherits. And
its api.json carries the port the API really got."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from rich.console import Console

import salon.cli.up as up_module
from salon.api.context import ApiContext
from salon.api.server import ApiServer
from salon.app.surface import api_secret
from salon.cli.api_file import ApiFile
from salon.config import parse_config
from salon.matrix.registration import Credentials

OPERATOR_TOKEN = "syt_operator_access_token_42"
Check = Callable[[dict[str, Any]], Awaitable[None]]


async def run_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check: Check) -> dict[str, Any]:
    """Run `salon up`'s set-up on a fake Synapse, with a gateway that starts a real API
    server from the config it was given and runs ``check`` inside its start."""
    seen: dict[str, Any] = {}
    stop = asyncio.Event()

    class FakeSynapse:
        def __init__(self, layout: Any) -> None:
            pass

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

    async def register(layout: Any, localpart: str, device_id: Any = None) -> Credentials:
        return Credentials("@operator:localhost", OPERATOR_TOKEN, "DEV")

    class FakeGateway:
        def __init__(self, config: Any, **kwargs: Any) -> None:
            self.config = config
            self.secrets = kwargs.get("secrets") or {}
            self.api: ApiServer | None = None

        async def start(self) -> Any:
            api = self.config.api
            token = api_secret(api.token_env, "api.token_env", self.secrets)
            operator = api_secret(api.operator_token_env, "api.operator_token_env", self.secrets)
            seen.update(token=token, operator=operator)
            self.api = ApiServer(api, cast("ApiContext", object()), token)
            await self.api.start()
            seen["url"] = self.api.url
            await check(seen)
            stop.set()
            return SimpleNamespace(
                agent_apis={}, agent_users={}, topology=SimpleNamespace(space_id=None)
            )

        async def shutdown(self) -> None:
            seen["api_file"] = ApiFile.load(tmp_path)
            assert self.api is not None
            await self.api.stop()

        async def stop(self) -> None:
            pass

        def stop_now(self) -> None:
            pass

    async def no_join(op: Any) -> None:
        pass

    monkeypatch.setattr(up_module, "SynapseProcess", FakeSynapse)
    monkeypatch.setattr(up_module, "register_operator", register)
    monkeypatch.setattr(up_module, "Gateway", FakeGateway)
    monkeypatch.setattr(up_module, "join_operator", no_join)
    config = parse_config("agents: {echo: {backend: {type: echo}}}")
    await up_module.up(
        config,
        tmp_path,
        port=None,
        operator="operator",
        console=Console(record=True, width=200),
        stop=stop,
    )
    return seen


async def test_tokens_reach_the_api_but_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def check(seen: dict[str, Any]) -> None:
        seen["environ"] = dict(os.environ)

    # Something listens on the API's default port: the API takes the next free one.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        monkeypatch.setattr(up_module, "DEFAULT_API_PORT", taken)
        seen = await run_up(tmp_path, monkeypatch, check)

    token = seen["token"]
    assert token and seen["operator"] == OPERATOR_TOKEN
    environ = seen["environ"]
    assert up_module.API_TOKEN_ENV not in environ
    assert up_module.OPERATOR_TOKEN_ENV not in environ
    assert token not in environ.values() and OPERATOR_TOKEN not in environ.values()
    saved = seen["api_file"]
    assert saved is not None and saved.token == token
    port = int(saved.url.rsplit(":", 1)[1])
    assert taken < port < taken + up_module.API_PORT_TRIES  # the port it really got
    assert up_module.API_TOKEN_ENV not in os.environ  # nor after it stopped


@pytest.mark.subprocess
async def test_a_child_process_of_a_backend_sees_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def check(seen: dict[str, Any]) -> None:
        # What a backend's tool or CLI would inherit, started while the gateway runs.
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import json, os; print(json.dumps(dict(os.environ)))",
            stdout=subprocess.PIPE,
        )
        out, _ = await child.communicate()
        seen["child_env"] = json.loads(out)
        # The API still takes the token (given to it directly).
        assert seen["token"]
        async with aiohttp.ClientSession() as session:
            for bearer, status in (("wrong", 401), (seen["token"], 404)):
                headers = {"Authorization": f"Bearer {bearer}"}
                url = f"{seen['url']}/api/v1/nothing-here"
                async with session.get(url, headers=headers) as response:
                    assert response.status == status

    monkeypatch.setattr(up_module, "DEFAULT_API_PORT", 0)
    seen = await run_up(tmp_path, monkeypatch, check)
    child_env = seen["child_env"]
    assert up_module.API_TOKEN_ENV not in child_env
    assert up_module.OPERATOR_TOKEN_ENV not in child_env
    assert seen["token"] not in child_env.values() and OPERATOR_TOKEN not in child_env.values()
