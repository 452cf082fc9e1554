"""The CLI over the gateway's HTTP API, against a fake API with canned answers: an
API error gives the CLI's error line and exit status; answers render as the direct
path's do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.test_via_api import NOW_MS, _agent, _api_json, _dead_operator_file, runner

from salon.cli.api_file import ApiFile
from salon.cli.main import app

from .apifake import FakeApi, error, running_fake


@pytest.fixture
def fake() -> Iterator[FakeApi]:
    with running_fake() as api:
        yield api


def test_unknown_agent_gives_the_direct_paths_line(fake: FakeApi, tmp_path: Path) -> None:
    direct_dir, api_dir = tmp_path / "direct", tmp_path / "api"
    _dead_operator_file(direct_dir)
    direct = runner.invoke(app, ["send", "-d", str(direct_dir), "--to", "nobody", "hi"])
    fake.answers["POST", "/api/v1/messages"] = (
        404,
        error("agent_not_found", "no agent 'nobody' (known: parrot, echo)"),
    )
    _api_json(api_dir, fake)
    over_api = runner.invoke(app, ["send", "-d", str(api_dir), "--to", "nobody", "hi"])
    assert fake.api_calls(), "the API was not asked"
    assert direct.output == "error: unknown agent 'nobody' (known: echo, parrot)\n"
    assert (
        (over_api.exit_code, over_api.output)
        == (direct.exit_code, direct.output)
        == (
            2,
            direct.output,
        )
    )


@pytest.mark.parametrize(
    ("status", "code", "message", "args", "exit_code", "line"),
    [
        (
            504,
            "timeout",
            "no answer within 1.5 s",
            ["send", "--to", "parrot", "--timeout", "1.5", "hi"],
            1,
            "error: parrot: no reply within 1.5 s (is the gateway running? try `salon who`)",
        ),
        (
            504,
            "timeout",
            "no answer within 2 s",
            ["delegate", "--from", "echo", "--to", "parrot", "--timeout", "2", "hi"],
            1,
            "error: echo → parrot: no reply within 2 s",
        ),
        (
            503,
            "homeserver_unavailable",
            "the homeserver is not reachable: connection refused",
            ["send", "--to", "parrot", "hi"],
            1,
            "error: the gateway at {url} cannot reach its homeserver: connection refused",
        ),
        (
            500,
            "internal_error",
            "internal error (KeyError); see the gateway log",
            ["who"],
            1,
            "error: internal error (KeyError); see the gateway log",
        ),
        (
            404,
            "room_not_found",
            "no room 'nowhere'",
            ["read", "--room", "nowhere"],
            2,
            "error: no room 'nowhere'",
        ),
    ],
)
def test_api_errors_map_to_the_cli_error_lines(
    fake: FakeApi,
    tmp_path: Path,
    status: int,
    code: str,
    message: str,
    args: list[str],
    exit_code: int,
    line: str,
) -> None:
    for route in (
        ("POST", "/api/v1/messages"),
        ("POST", "/api/v1/delegations"),
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/rooms/nowhere/messages"),
    ):
        fake.answers[route] = (status, error(code, message))
    _api_json(tmp_path, fake)
    result = runner.invoke(app, [*args, "-d", str(tmp_path)])
    assert result.exit_code == exit_code, result.output
    assert result.output == line.format(url=fake.url) + "\n"


def test_a_refused_token_says_where_it_came_from(fake: FakeApi, tmp_path: Path) -> None:
    ApiFile(url=fake.url, token="wrong", pid=1).save(tmp_path)
    result = runner.invoke(app, ["who", "-d", str(tmp_path)])
    assert result.exit_code == 2
    assert f"the API at {fake.url} refused the token (from {tmp_path / 'api.json'})" in (
        result.output
    )


def test_who_renders_the_api_answer(fake: FakeApi, tmp_path: Path) -> None:
    fake.answers["GET", "/api/v1/agents"] = (
        200,
        {"agents": [_agent("echo", "online", NOW_MS), _agent("parrot", "offline", None)]},
    )
    _api_json(tmp_path, fake)  # and no operator.json: the direct path could not answer
    result = runner.invoke(app, ["who", "-d", str(tmp_path), "-v"])
    assert result.exit_code == 0, result.output
    assert f"using the API at {fake.url}" in result.output
    assert "#salon-echo:localhost" in result.output and "online" in result.output
    assert "never" in result.output  # parrot: no beat yet


def test_status_renders_the_api_answer(fake: FakeApi, tmp_path: Path) -> None:
    fake.answers["GET", "/api/v1/status"] = (
        200,
        {
            "gateway": "host",
            "delegations": [],
            "turns_in_flight": [{"event_id": "$e", "agent": "parrot", "state": None}],
            "loops": [],
            "store": {"ok": True},
            "homeserver": {"ok": True},
        },
    )
    _api_json(tmp_path, fake)  # and no salon.db: the direct path could not answer
    result = runner.invoke(app, ["status", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"gateway host (pid 4242): running, its API answers at {fake.url}" in result.output
    assert "parrot" in result.output and "$e" in result.output


def test_api_option_and_token_from_the_environment(fake: FakeApi, tmp_path: Path) -> None:
    fake.answers["GET", "/api/v1/agents"] = (200, {"agents": [_agent("echo", "online", NOW_MS)]})
    result = runner.invoke(
        app,
        ["who", "-d", str(tmp_path), "--api", fake.url + "/"],
        env={"SALON_API_TOKEN": "fake-token"},
    )
    assert result.exit_code == 0, result.output
    assert [c.auth for c in fake.api_calls()] == ["Bearer fake-token"]
