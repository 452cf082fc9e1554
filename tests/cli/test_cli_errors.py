"""The CLI's failure paths: each says what is wrong and exits non-zero."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from typer.testing import CliRunner

from salon.cli import pidfile
from salon.cli.main import app
from salon.cli.operator_file import OperatorFile
from salon.devserver.synapse import free_port
from salon.ids import RoomAlias, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import room_encryption_state

from ..conftest import register_user, unique_localpart

runner = CliRunner()


def test_bad_config_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "salon.yaml"
    bad.write_text(
        "homeserver: {url: http://127.0.0.1:1, server_name: localhost}\n"
        "agents:\n"
        "  coder:\n"
        "    backend: {type: telepathy}\n"
    )
    result = runner.invoke(app, ["run", "-c", str(bad)])
    assert result.exit_code == 2
    assert "salon.yaml:4" in result.output
    assert "agents.coder.backend.type" in result.output


def test_commands_without_operator_file_say_how_to_start(tmp_path: Path) -> None:
    result = runner.invoke(app, ["who", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "salon up" in result.output


def _operator_file(
    synapse: Any, tmp_path: Path, *, encrypted: bool = False
) -> tuple[OperatorFile, str]:
    async def setup() -> tuple[OperatorFile, str]:
        creds = await register_user(synapse)
        alias_localpart = unique_localpart("silent")
        async with aiohttp.ClientSession() as session:
            api = MatrixAPI(
                synapse.base_url, UserId(creds.user_id), creds.access_token, session=session
            )
            await api.create_room(
                alias_localpart=alias_localpart,
                name="nobody home",
                initial_state=[room_encryption_state()] if encrypted else [],
            )
        alias = f"#{alias_localpart}:{synapse.server_name}"
        op = OperatorFile(
            homeserver_url=synapse.base_url,
            server_name=synapse.server_name,
            user_id=creds.user_id,
            password="unused",
            access_token=creds.access_token,
            space_alias=f"#{unique_localpart('space')}:{synapse.server_name}",
            lobby_alias=alias,
            agent_rooms={"ghost": alias},
        )
        op.save(tmp_path)
        return op, alias

    return asyncio.run(setup())


def test_send_times_out_with_a_clear_message(synapse: Any, tmp_path: Path) -> None:
    _operator_file(synapse, tmp_path)
    result = runner.invoke(
        app, ["send", "--data-dir", str(tmp_path), "--to", "ghost", "--timeout", "1.5", "hi"]
    )
    assert result.exit_code == 1
    assert "no reply within 1.5 s" in result.output


def test_send_refuses_to_post_in_clear_into_an_encrypted_room(synapse: Any, tmp_path: Path) -> None:
    """Without the gateway's API the CLI has no device: it says so and sends nothing."""
    op, alias = _operator_file(synapse, tmp_path, encrypted=True)
    result = runner.invoke(app, ["send", "--data-dir", str(tmp_path), "--to", "ghost", "hi"])
    assert result.exit_code == 2, result.output
    assert "is encrypted" in result.output and "gateway's API" in result.output

    async def sent() -> list[str]:
        async with aiohttp.ClientSession() as session:
            api = MatrixAPI(op.homeserver_url, UserId(op.user_id), op.access_token, session=session)
            room_id, _ = await api.resolve_alias(RoomAlias(alias))
            page = await api.messages(room_id, limit=50)
            return [e["type"] for e in page.get("chunk") or [] if "state_key" not in e]

    assert asyncio.run(sent()) == []  # no message of any kind


def test_send_to_unknown_agent_lists_the_known_ones(synapse: Any, tmp_path: Path) -> None:
    _operator_file(synapse, tmp_path)
    result = runner.invoke(app, ["send", "--data-dir", str(tmp_path), "--to", "nobody", "hi"])
    assert result.exit_code == 2
    assert "unknown agent 'nobody' (known: ghost)" in result.output


def test_who_reports_a_missing_space(synapse: Any, tmp_path: Path) -> None:
    _operator_file(synapse, tmp_path)
    result = runner.invoke(app, ["who", "--data-dir", str(tmp_path)])
    assert "Space unavailable" in result.output


def _unreachable_operator_file(data_dir: Path) -> str:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    OperatorFile(
        homeserver_url=url,
        server_name="localhost",
        user_id="@operator:localhost",
        password="unused",
        access_token="unused",
        space_alias="#salon:localhost",
        lobby_alias="#lobby:localhost",
        agent_rooms={"echo": "#salon-echo:localhost"},
    ).save(data_dir)
    return url


def test_who_with_the_homeserver_down_says_so_and_what_to_do(tmp_path: Path) -> None:
    url = _unreachable_operator_file(tmp_path)
    result = runner.invoke(app, ["who", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"the homeserver at {url} is unreachable" in result.output
    assert "make demo" in result.output and f"salon up --data-dir {tmp_path}" in result.output
    assert "┏" not in result.output  # no empty table


def test_other_commands_with_the_homeserver_down(tmp_path: Path) -> None:
    url = _unreachable_operator_file(tmp_path)
    for args in (["read", "--room", "echo"], ["send", "--to", "echo", "hi"]):
        result = runner.invoke(app, [*args, "--data-dir", str(tmp_path)])
        assert result.exit_code == 1, args
        assert f"the homeserver at {url} is unreachable" in result.output


def test_who_with_the_homeserver_down_while_salon_runs(tmp_path: Path) -> None:
    _unreachable_operator_file(tmp_path)
    with pidfile.holding(tmp_path, "up") as info:
        result = runner.invoke(app, ["who", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"salon up (pid {info.pid}) runs from {tmp_path}" in result.output
    assert "salon logs" in result.output and "--synapse" in result.output
