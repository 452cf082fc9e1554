"""`salon up` without starting anything: a busy port, the port's sources, the restart
hint, the example agent of the start-up panel, and `make demo PORT=…`."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import salon.cli.up as up_module
from salon.cli.main import app
from salon.cli.operator_file import OperatorFile
from salon.cli.up import example_agent, print_ready
from salon.config import load_config, parse_config
from salon.devserver.synapse import SynapseSettings, write_synapse_config

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config of one offline agent (the tests do not depend on the demo's)."""
    path = tmp_path / "salon.yaml"
    path.write_text("agents: {echo: {backend: {type: echo}}}\n")
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_busy_port_fails_before_starting_anything(
    busy_port: int, config: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    result = runner.invoke(
        app,
        ["up", "-c", str(config), "--data-dir", str(data_dir), "--port", str(busy_port)],
        env={"SALON_PORT": ""},
    )
    assert result.exit_code != 0
    assert f"port {busy_port} is in use" in result.output
    assert "try --port " in result.output
    assert "Stopped" not in result.output
    assert not (data_dir / "salon.pid").exists()
    assert not (data_dir / "synapse" / "homeserver.pid").exists()


def test_salon_port_env_and_the_flag_wins(busy_port: int, config: Path, tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        other_port = int(other.getsockname()[1])
        from_env = runner.invoke(
            app,
            ["up", "-c", str(config), "--data-dir", str(tmp_path)],
            env={"SALON_PORT": str(busy_port)},
        )
        assert f"port {busy_port} is in use" in from_env.output
        both = runner.invoke(
            app,
            ["up", "-c", str(config), "--data-dir", str(tmp_path), "--port", str(other_port)],
            env={"SALON_PORT": str(busy_port)},
        )
        assert f"port {other_port} is in use" in both.output


def test_restart_hint_repeats_the_given_flags(
    monkeypatch: pytest.MonkeyPatch, config: Path, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    async def fake_up(config: Any, data_dir: Path, **kwargs: Any) -> None:
        seen.update(kwargs, data_dir=data_dir)

    monkeypatch.setattr(up_module, "up", fake_up)
    data_dir = tmp_path / "my data"
    result = runner.invoke(
        app,
        ["up", "-c", str(config), "-d", str(data_dir), "--port", "8010", "--operator", "alice"],
        env={"SALON_PORT": ""},
    )
    assert result.exit_code == 0, result.output
    assert seen["port"] == 8010
    assert seen["restart_command"] == (
        f"salon up --config {config} --data-dir '{data_dir}' --port 8010 --operator alice"
    )
    # The defaults are not repeated; a port from SALON_PORT is the environment's to give.
    result = runner.invoke(
        app, ["up", "-c", str(config), "-d", str(tmp_path)], env={"SALON_PORT": "8011"}
    )
    assert result.exit_code == 0, result.output
    assert seen["port"] == 8011
    assert seen["restart_command"] == f"salon up --config {config} --data-dir {tmp_path}"


def test_the_stopped_line_carries_the_restart_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After a run, "Start again with" names the command given, not `make demo`."""

    class FakeSynapse:
        def __init__(self, layout: Any) -> None:
            self.layout = layout

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

    async def failing_register(layout: Any, localpart: str, device_id: Any = None) -> Any:
        raise up_module.DevServerError("registration failed")

    monkeypatch.setattr(up_module, "SynapseProcess", FakeSynapse)
    monkeypatch.setattr(up_module, "register_operator", failing_register)
    console = Console(record=True, width=200)
    config = parse_config("agents: {echo: {backend: {type: echo}}}")
    with pytest.raises(up_module.DevServerError):
        import asyncio

        asyncio.run(
            up_module.up(
                config,
                tmp_path,
                port=None,
                operator="operator",
                console=console,
                restart_command="salon up --port 8010",
            )
        )
    text = console.export_text()
    assert "Stopped Salon and Synapse. Start again with `salon up --port 8010`." in text
    assert "make demo" not in text


CONFIG = """
agents:
  zeta: {backend: {type: echo}}
  alpha: {backend: {type: echo}}
  mid: {backend: {type: echo}}
"""


def test_example_agent_is_the_default_agent_else_the_first_configured() -> None:
    config = parse_config(CONFIG)
    assert example_agent(config, ["alpha", "mid", "zeta"]) == "zeta"
    with_default = parse_config(CONFIG + "default_agent: mid\n")
    assert example_agent(with_default, ["alpha", "mid", "zeta"]) == "mid"


def test_start_up_panel_uses_the_default_agent(tmp_path: Path) -> None:
    config = parse_config(CONFIG + "default_agent: mid\n")
    op = OperatorFile(
        homeserver_url="http://127.0.0.1:8008",
        server_name="localhost",
        user_id="@operator:localhost",
        password="p",
        access_token="t",
        space_alias="#salon:localhost",
        lobby_alias="#lobby:localhost",
        agent_rooms={a: f"#salon-{a}:localhost" for a in sorted(config.agents)},
    )
    state: Any = SimpleNamespace(
        agent_users={a: f"@salon_{a}:localhost" for a in config.agents},
        topology=SimpleNamespace(space_id="!space:localhost"),
    )
    console = Console(record=True, width=200)
    print_ready(console, op, Path("salon-data"), state, config)
    text = console.export_text()
    assert 'salon send --to mid "hello"' in text
    assert "salon read --room mid" in text
    # The agents are listed in config order.
    assert text.index("zeta") < text.index("alpha") < text.index("mid  ")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["PORT=8010"], "salon up --config examples/salon.yaml --port 8010"),
        ([], "salon up --config examples/salon.yaml"),
    ],
)
@pytest.mark.subprocess
def test_make_demo_takes_a_port(args: list[str], expected: str) -> None:
    result = subprocess.run(
        ["make", "-n", "demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PORT": "3000"},  # a stray PORT in the env is ignored
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith(expected)


def test_the_operator_is_an_admin_of_the_running_config_only(tmp_path: Path) -> None:
    demo = load_config(ROOT / "examples" / "salon.yaml")
    assert demo.access.admins == [] and demo.access.allowed_users is None
    layout = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    operator = f"@operator:{layout.server_name}"
    running = up_module.local_config(demo, layout, tmp_path, operator=operator)
    assert running.access.admins == [operator]
    assert running.access.is_allowed(operator)
    assert not running.access.is_allowed(f"@someone:{layout.server_name}")  # closed to others
    assert demo.access.admins == []  # the config as written is left as it is
    again = up_module.local_config(running, layout, tmp_path, operator=operator)
    assert again.access.admins == [operator]  # once, however often it is applied


def test_the_local_store_keeps_the_files_retention(tmp_path: Path) -> None:
    config = parse_config(
        "agents: {echo: {backend: {type: echo}}}\n"
        "store: {retention_days: 7, max_session_messages: 50}\n"
    )
    layout: Any = SimpleNamespace(
        base_url="http://127.0.0.1:8008", server_name="localhost", registration_shared_secret="s"
    )
    store = up_module.local_config(config, layout, tmp_path).store
    assert store.url == f"sqlite:///{(tmp_path / 'salon.db').resolve()}"
    assert store.retention_days == 7 and store.max_session_messages == 50
