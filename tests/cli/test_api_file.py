"""``api.json``: written owner-only, removed by its writer only; `salon run` writes it
once its API listens and removes it on exit; `salon up` picks the API's port and
shows the API in its start-up panel."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

import salon.cli.up as up_module
from salon.cli import api_file
from salon.cli.api_file import ApiFile, client_url
from salon.cli.operator_file import OperatorFile
from salon.cli.run import serve
from salon.config import parse_config
from salon.devserver.synapse import free_port


def test_saved_owner_only_and_read_back(tmp_path: Path) -> None:
    (tmp_path / "api.json").write_text("{}")
    os.chmod(tmp_path / "api.json", 0o644)  # an older file, readable by all
    saved = ApiFile(url="http://127.0.0.1:8765", token="s3cret", pid=12)
    path = saved.save(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ApiFile.load(tmp_path) == saved
    assert ApiFile.load(tmp_path / "elsewhere") is None


def test_never_readable_by_others_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stale temporary file of an older writer, readable by all, and no umask to help.
    (tmp_path / "api.tmp").write_text("{}")
    os.chmod(tmp_path / "api.tmp", 0o644)
    modes: list[int] = []
    real_fdopen = os.fdopen

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))  # as the token is written
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)
    old_umask = os.umask(0)
    try:
        ApiFile(url="http://127.0.0.1:8765", token="s3cret", pid=12).save(tmp_path)
    finally:
        os.umask(old_umask)
    assert modes == [0o600]
    assert stat.S_IMODE((tmp_path / "api.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.json", "api.tmp"]


def test_removed_only_by_the_process_that_wrote_it(tmp_path: Path) -> None:
    ApiFile(url="http://127.0.0.1:1", token=None, pid=12).save(tmp_path)
    api_file.remove(tmp_path, pid=13)
    assert (tmp_path / "api.json").exists()
    api_file.remove(tmp_path, pid=12)
    assert not (tmp_path / "api.json").exists()
    api_file.remove(tmp_path, pid=12)  # gone already: fine


def test_client_url_reaches_a_server_on_every_address() -> None:
    assert client_url("0.0.0.0", 80) == "http://127.0.0.1:80"
    assert client_url("::", 80) == "http://[::1]:80"
    assert client_url("::1", 80) == "http://[::1]:80"
    assert client_url("localhost", 80) == "http://localhost:80"


class FakeGateway:
    """What `serve` uses of a Gateway: start, api, stop."""

    def __init__(self, port: int, seen: dict[str, Any], data_dir: Path) -> None:
        self.api: Any = None
        self.port = port
        self.seen = seen
        self.data_dir = data_dir

    async def start(self) -> None:
        # Port 0 in the config; the server listens on a real one.
        self.api = SimpleNamespace(
            config=SimpleNamespace(host="127.0.0.1"),
            port=self.port,
            token="tok-of-the-server",
            login_link=lambda base: f"{base}/dashboard/login?code=once",
        )

    async def stop(self) -> None:
        self.seen["at_stop"] = (self.data_dir / "api.json").exists()

    def stop_now(self) -> None:
        pass

    async def shutdown(self) -> None:
        await self.stop()


def test_salon_run_writes_api_json_while_it_serves(tmp_path: Path) -> None:
    # The server's token, whether from `api.token_env` or made at start without one.
    config = parse_config(
        "agents: {echo: {backend: {type: echo}}}\napi: {listen: '127.0.0.1:0', token_env: null}\n"
    )
    seen: dict[str, Any] = {}

    async def go() -> None:
        stop = asyncio.Event()
        gateway: Any = FakeGateway(43210, seen, tmp_path)
        task = asyncio.create_task(
            serve(config, tmp_path, Console(record=True), stop=stop, gateway=gateway)
        )
        for _ in range(1000):  # up to 10 s on a loaded machine
            if (tmp_path / "api.json").exists():
                break
            await asyncio.sleep(0.01)
        seen["while_running"] = ApiFile.load(tmp_path)
        stop.set()
        await task

    asyncio.run(go())
    assert seen["while_running"] == ApiFile(
        url="http://127.0.0.1:43210",
        token="tok-of-the-server",
        pid=os.getpid(),
        dashboard_url="http://127.0.0.1:43210/dashboard/login?code=once",
    )
    assert seen["at_stop"] is False  # removed before the gateway stops
    assert not (tmp_path / "api.json").exists()


def test_salon_run_without_an_api_section_writes_none(tmp_path: Path) -> None:
    config = parse_config("agents: {echo: {backend: {type: echo}}}\n")

    class NoApi(FakeGateway):
        async def start(self) -> None:
            pass

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            serve(config, tmp_path, Console(), stop=stop, gateway=NoApi(1, {}, tmp_path))  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.05)
        assert not (tmp_path / "api.json").exists()
        stop.set()
        await task

    asyncio.run(go())


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_api_port_default_is_left_to_the_server_to_move_on(busy_port: int) -> None:
    """No probe (two `salon up` at once would both pass it): the server binds 8765 or,
    taken, the next free one of 100 (tests/api/test_server_port.py)."""
    assert up_module.choose_api_port(None) == up_module.DEFAULT_API_PORT
    assert up_module.api_config(up_module.DEFAULT_API_PORT, "@op:x").port_tries == 100
    assert up_module.api_config(busy_port, "@op:x", tries=1).port_tries == 1
    assert up_module.choose_api_port(0) == 0


def test_a_busy_api_port_given_is_refused(busy_port: int) -> None:
    with pytest.raises(up_module.DevServerError, match=f"--api-port {busy_port} is in use"):
        up_module.choose_api_port(busy_port)


def test_the_api_never_takes_the_homeservers_port(monkeypatch: pytest.MonkeyPatch) -> None:
    free = free_port()
    monkeypatch.setattr(up_module, "DEFAULT_API_PORT", free)
    assert up_module.choose_api_port(None, homeserver_port=free) != free
    with pytest.raises(up_module.DevServerError, match="the homeserver's port"):
        up_module.choose_api_port(free, homeserver_port=free)


def test_salon_up_api_section_points_at_its_own_variables() -> None:
    api = up_module.api_config(8765, "@operator:localhost")
    assert api.listen == "127.0.0.1:8765" and api.operator_user_id == "@operator:localhost"
    assert api.token_env == up_module.API_TOKEN_ENV != "SALON_API_TOKEN"
    assert api.operator_token_env == up_module.OPERATOR_TOKEN_ENV


def test_start_up_panel_shows_the_api(tmp_path: Path) -> None:
    config = parse_config("agents: {echo: {backend: {type: echo}}}\n")
    op = OperatorFile(
        homeserver_url="http://127.0.0.1:8008",
        server_name="localhost",
        user_id="@operator:localhost",
        password="p",
        access_token="t",
        space_alias="#salon:localhost",
        lobby_alias="#lobby:localhost",
        agent_rooms={"echo": "#salon-echo:localhost"},
    )
    state: Any = SimpleNamespace(
        agent_users={"echo": "@salon_echo:localhost"},
        topology=SimpleNamespace(space_id="!space:localhost"),
    )
    console = Console(record=True, width=300)
    link = "http://127.0.0.1:8766/dashboard/login?code=" + "c" * 32
    api = ApiFile(url="http://127.0.0.1:8766", token="secret-token", pid=1, dashboard_url=link)
    up_module.print_ready(console, op, Path("salon-data"), state, config, api)
    text = console.export_text()
    assert f"Dashboard (the link logs in once): {link}" in text
    assert "HTTP API on http://127.0.0.1:8766 (bearer token in salon-data/api.json)" in text
    assert (
        'curl -H "Authorization: Bearer $(jq -r .token salon-data/api.json)"'
        " http://127.0.0.1:8766/api/v1/agents"
    ) in text
    assert "secret-token" not in text  # the token stays in the file
    assert "/a2a/" not in text  # A2A is off in this config
    served = config.model_copy(update={"api": up_module.api_config(8766, "@operator:localhost")})
    console = Console(record=True, width=300)
    up_module.print_ready(console, op, Path("salon-data"), state, served, api)
    card = "http://127.0.0.1:8766/a2a/echo/.well-known/agent-card.json"
    assert f"A2A agent card (same token): {card}" in console.export_text()
