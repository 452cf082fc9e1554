"""The CLI over the gateway's HTTP API, against a fake API with canned answers:
each command's data is what the direct path returns for the same facts.

Through the CLI (error lines, exit statuses, rendering) is test_via_api_cli.py;
falling back to the direct path test_via_api_fallback.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salon.cli import via_api
from salon.cli.api_file import ApiFile
from salon.cli.operator import AgentRow, Message, Reply, WhoResult
from salon.cli.operator_file import OperatorFile
from salon.cli.status import DelegationRow, DeviceRow, LoopRow, StatusReport, TurnRow
from salon.coordination.heartbeat import AgentStatus
from salon.devserver.synapse import free_port

from .apifake import FakeApi, running_fake

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
            "encryption": [
                {
                    "identity": "@salon:localhost",
                    "device_id": "ROUTERDEV",
                    "one_time_keys": 50,
                    "undecryptable_waiting": 1,
                    "decryption_failures": 2,
                }
            ],
            "appservice_set_aside": [
                {"txn_id": "k1", "seq": 7, "tries": 3, "reason": "ValueError: x", "set_aside_at": 1}
            ],
        },
    )
    report = via_api.status(endpoint)
    assert report.delegations == [DelegationRow("d1", "echo", "parrot", "progress", 65)]
    assert report.turns == [TurnRow("$e", "parrot", "running", 1, None)]
    assert report.gateway is not None
    assert (report.gateway.name, report.gateway.pid, report.gateway.running) == ("host", 4242, True)
    assert report.gateway.loops == [LoopRow("sync:@salon:localhost", 2, True, "boom")]
    assert report.problems[0] == "homeserver: no answer"
    assert report.problems[1].startswith("appservice transaction k1 set aside after 3 failed tries")
    assert len(report.problems) == 2
    assert report.gateway.devices == [DeviceRow("@salon:localhost", "ROUTERDEV", 50, 1, 2)]
    assert isinstance(report, StatusReport) and report.api_url == fake.url


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
