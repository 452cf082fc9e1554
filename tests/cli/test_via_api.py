"""The CLI over the gateway's HTTP API, against a fake API with canned answers.

Each command's data is what the direct path returns for the same facts; an API
error gives the CLI's error line and exit status; without an answering API (no
api.json, or one naming a dead port) the commands take the direct path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salon.cli import via_api
from salon.cli.api_file import ApiFile
from salon.cli.main import app
from salon.cli.operator import AgentRow, Message, Reply, WhoResult
from salon.cli.operator_file import OperatorFile
from salon.cli.status import DelegationRow, LoopRow, StatusReport, TurnRow
from salon.coordination.heartbeat import AgentStatus
from salon.devserver.synapse import free_port

from .apifake import FakeApi, error, running_fake

runner = CliRunner()
NOW_MS = int(time.time() * 1000)


@pytest.fixture
def fake() -> Iterator[FakeApi]:
    with running_fake() as api:
        yield api


@pytest.fixture
def endpoint(fake: FakeApi) -> via_api.Endpoint:
    return via_api.Endpoint(fake.url, fake.token, "test", pid=4242)


def _agent(agent_id: str, status: str, beat: int | None, **extra: object) -> dict[str, object]:
    """One agent as ``GET /api/v1/agents`` shows it."""
    return {
        "id": agent_id,
        "kind": "agent",
        "label": agent_id.title(),
        "description": "",
        "user_id": f"@salon_{agent_id}:localhost",
        "room_alias": f"#salon-{agent_id}:localhost",
        "room_id": f"!{agent_id}:localhost",
        "hosted": True,
        "status": status,
        "last_beat_ms": beat,
        "gateway": "host" if beat else None,
        "status_error": None,
        **extra,
    }


# --- each command's data ------------------------------------------------------------------


def test_who_lists_what_the_direct_path_lists(fake: FakeApi, endpoint: via_api.Endpoint) -> None:
    fake.answers["GET", "/api/v1/agents"] = (
        200,
        {
            "agents": [
                _agent("parrot", "busy", NOW_MS - 2000),
                _agent("echo", "online", NOW_MS - 1000),
                # No heartbeat in its room: the direct path finds no agent there either.
                _agent("ghost", "unknown", None, status_error="not found"),
                _agent("stale", "offline", NOW_MS - 3_600_000),
            ]
        },
    )
    result = via_api.who(endpoint)
    # What direct.who returns for these rooms: sorted by agent, no Space error.
    assert result == WhoResult(
        agents=[
            AgentRow(
                "echo",
                "@salon_echo:localhost",
                "#salon-echo:localhost",
                AgentStatus.ONLINE,
                NOW_MS - 1000,
            ),
            AgentRow(
                "parrot",
                "@salon_parrot:localhost",
                "#salon-parrot:localhost",
                AgentStatus.BUSY,
                NOW_MS - 2000,
            ),
            AgentRow(
                "stale",
                "@salon_stale:localhost",
                "#salon-stale:localhost",
                AgentStatus.OFFLINE,
                NOW_MS - 3_600_000,
            ),
        ],
        space_error=None,
    )
    [call] = fake.api_calls()
    assert call.auth == f"Bearer {fake.token}"


def _message_answer(reply: dict[str, object] | None) -> dict[str, object]:
    answer: dict[str, object] = {"event_id": "$m", "room_id": "!parrot:localhost", "to": "parrot"}
    answer.update(routed="room", replies=[reply] if reply else [], reply=reply)
    return answer


def test_send_and_wait_returns_the_reply(fake: FakeApi, endpoint: via_api.Endpoint) -> None:
    fake.answers["POST", "/api/v1/messages"] = (
        200,
        _message_answer(
            {
                "agent": "parrot",
                "state": "replied",
                "event_id": "$r",
                "text": "🦜 hello",
                "notice": False,
                "error": None,
            }
        ),
    )
    assert via_api.send(endpoint, "hello", to="parrot", wait_s=7.5) == Reply("🦜 hello", False)
    [call] = fake.api_calls()
    assert call.body == {"to": "parrot", "text": "hello", "wait": True, "timeout_s": 7.5}


def test_send_a_failed_turn_is_a_notice(fake: FakeApi, endpoint: via_api.Endpoint) -> None:
    failed = {
        "agent": "assistant",
        "state": "failed",
        "event_id": "$r",
        "text": "⚠️ cannot reach http://127.0.0.1:9/v1",
        "notice": True,
        "error": "cannot reach",
    }
    fake.answers["POST", "/api/v1/messages"] = (200, _message_answer(failed))
    reply = via_api.send(endpoint, "hi", to="assistant", wait_s=5)
    assert reply == Reply("⚠️ cannot reach http://127.0.0.1:9/v1", True)
    # No reply message at all, only the ledger's error: still a notice, with the error.
    fake.answers["POST", "/api/v1/messages"] = (
        200,
        _message_answer({**failed, "text": None, "event_id": None}),
    )
    assert via_api.send(endpoint, "hi", to="assistant", wait_s=5) == Reply("cannot reach", True)


def test_send_without_waiting_to_the_lobby(fake: FakeApi, endpoint: via_api.Endpoint) -> None:
    fake.answers["POST", "/api/v1/messages"] = (
        202,
        {"event_id": "$m", "room_id": "!lobby:localhost", "to": "lobby"},
    )
    assert via_api.send(endpoint, "hi all", to=None, wait_s=None) is None
    [call] = fake.api_calls()
    assert call.body == {"to": "lobby", "text": "hi all"}


def test_delegate_returns_the_outcome(fake: FakeApi, endpoint: via_api.Endpoint) -> None:
    fake.answers["POST", "/api/v1/delegations"] = (200, {"ok": True, "text": "🦜 hi", "id": "d1"})
    assert via_api.delegate(endpoint, "hi", frm="echo", to="parrot", wait_s=60) == Reply(
        "🦜 hi", False
    )
    [call] = fake.api_calls()
    assert call.body == {
        "from": "echo",
        "to": "parrot",
        "task": "hi",
        "wait": True,
        "timeout_s": 60,
    }
    fake.answers["POST", "/api/v1/delegations"] = (
        200,
        {"ok": False, "text": "[OFFLINE] parrot", "id": None},
    )
    assert via_api.delegate(endpoint, "hi", frm="echo", to="parrot", wait_s=60) == Reply(
        "[OFFLINE] parrot", True
    )


def test_read_returns_messages_oldest_first(fake: FakeApi, endpoint: via_api.Endpoint) -> None:
    fake.answers["GET", "/api/v1/rooms/parrot/messages"] = (
        200,
        {
            "room_id": "!parrot:localhost",
            "messages": [
                {
                    "event_id": "$1",
                    "sender": "@operator:localhost",
                    "ts": 1000,
                    "body": "hello",
                    "notice": False,
                    "edited": False,
                    "agent": None,
                },
                {
                    "event_id": "$2",
                    "sender": "@salon_parrot:localhost",
                    "ts": 2000,
                    "body": "🦜 hello",
                    "notice": True,
                    "edited": True,
                    "agent": "parrot",
                },
            ],
        },
    )
    assert via_api.read(endpoint, "parrot", 5) == [
        Message(1000, "@operator:localhost", "hello", False),
        Message(2000, "@salon_parrot:localhost", "🦜 hello", True),
    ]
    assert fake.api_calls()[0].query == {"limit": "5"}


def test_status_as_the_store_path_reports_it(fake: FakeApi, endpoint: via_api.Endpoint) -> None:
    fake.answers["GET", "/api/v1/status"] = (
        200,
        {
            "gateway": "host",
            "delegations": [
                {"id": "d1", "from": "echo", "to": "parrot", "state": "progress", "age_s": 65}
            ],
            "turns_in_flight": [
                {"event_id": "$e", "agent": "parrot", "state": "running", "attempts": 1}
            ],
            "loops": [
                {
                    "name": "sync:@salon:localhost",
                    "running": True,
                    "restarts": 2,
                    "backing_off": True,
                    "last_error": "boom",
                }
            ],
            "loops_restarting": ["sync:@salon:localhost"],
            "loops_ok": False,
            "store": {"ok": True},
            "homeserver": {"ok": False, "error": "no answer"},
        },
    )
    report = via_api.status(endpoint)
    assert report.delegations == [DelegationRow("d1", "echo", "parrot", "progress", 65)]
    assert report.turns == [TurnRow("$e", "parrot", "running", 1, None)]
    assert report.gateway is not None
    assert (report.gateway.name, report.gateway.pid, report.gateway.running) == ("host", 4242, True)
    assert report.gateway.loops == [LoopRow("sync:@salon:localhost", 2, True, "boom")]
    assert report.problems == ["homeserver: no answer"]
    assert isinstance(report, StatusReport) and report.api_url == fake.url


# --- through the CLI: the same lines and exit codes ---------------------------------------


def _dead_operator_file(data_dir: Path) -> str:
    """An operator.json whose homeserver nobody answers (the direct path's facts)."""
    url = f"http://127.0.0.1:{free_port()}"
    OperatorFile(
        homeserver_url=url,
        server_name="localhost",
        user_id="@operator:localhost",
        password="unused",
        access_token="unused",
        space_alias="#salon:localhost",
        lobby_alias="#lobby:localhost",
        agent_rooms={"parrot": "#salon-parrot:localhost", "echo": "#salon-echo:localhost"},
    ).save(data_dir)
    return url


def _api_json(data_dir: Path, fake: FakeApi) -> None:
    ApiFile(url=fake.url, token=fake.token, pid=4242).save(data_dir)


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


# --- falling back to the direct path --------------------------------------------------------


def test_no_api_json_takes_the_direct_path(fake: FakeApi, tmp_path: Path) -> None:
    url = _dead_operator_file(tmp_path)
    result = runner.invoke(app, ["who", "-d", str(tmp_path), "-v"])
    assert result.exit_code == 1
    assert f"no {tmp_path / 'api.json'}; using the direct path" in result.output
    assert f"the homeserver at {url} is unreachable" in result.output
    assert fake.requests == []


def test_api_json_naming_a_dead_port_takes_the_direct_path(tmp_path: Path) -> None:
    url = _dead_operator_file(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    ApiFile(url=dead, token="t", pid=1).save(tmp_path)
    for args in (["who"], ["send", "--to", "parrot", "hi"], ["read", "--room", "parrot"]):
        result = runner.invoke(app, [*args, "-d", str(tmp_path)])
        assert result.exit_code == 1, (args, result.output)
        # Nothing said about the API (only with --verbose); the direct path's own error.
        assert result.output.startswith(f"error: the homeserver at {url} is unreachable"), args
    verbose = runner.invoke(app, ["who", "-d", str(tmp_path), "-v"])
    assert f"the API at {dead} (from {tmp_path / 'api.json'}) does not answer" in verbose.output
    assert "using the direct path" in verbose.output


def test_a_dead_api_option_takes_the_direct_path_for_status(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["status", "-d", str(tmp_path), "--api", dead])
    assert result.exit_code == 2
    assert "no store here yet" in result.output  # the store path's answer


def test_a_broken_api_json_takes_the_direct_path(tmp_path: Path) -> None:
    _dead_operator_file(tmp_path)
    (tmp_path / "api.json").write_text("{not json")
    result = runner.invoke(app, ["who", "-d", str(tmp_path), "-v"])
    assert result.exit_code == 1
    assert "unreadable API file" in result.output and "is unreachable" in result.output


def test_a_long_read_is_read_directly(fake: FakeApi, tmp_path: Path) -> None:
    _dead_operator_file(tmp_path)
    _api_json(tmp_path, fake)
    result = runner.invoke(app, ["read", "--room", "parrot", "-n", "300", "-d", str(tmp_path)])
    assert result.exit_code == 1 and "is unreachable" in result.output
    assert fake.requests == []  # the API returns at most 200: not even probed
