"""Start and stop by composition: the steps are torn down in reverse, also when a
late step fails (the gateway on the fake homeserver, every step its real one)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import structlog
from tests.fake_matrix import FakeHomeserver, FakeMatrixAPI
from tests.gateway.helpers import event, eventually

import salon.app.assemble as assemble_module
import salon.app.modes as modes_module
from salon import log as salon_log
from salon._exceptions import ConfigError
from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.coordination.heartbeat import AGENT_STATE
from salon.gateway.identities import IdentitySpec
from salon.ids import AgentId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.source import EventSink, LoopStatus

SERVER = "localhost"
STEPS = (
    "opened_store",
    "built_backends",
    "http_session",
    "hosting",
    "routing",
    "running_turns",
    "syncing",
    "supervising",
    "heartbeats",
    "reloading",
    "serving_api",
)


class FakeSource:
    """Stands in for the sync loops (the fake homeserver has no /sync)."""

    sinks: ClassVar[list[EventSink]] = []  # where the started ones admit (the latest last)

    def __init__(self, apis: Sequence[MatrixAPI], *args: Any, **kwargs: Any) -> None:
        self.users = [api.user_id for api in apis]

    async def start(self, sink: EventSink) -> None:
        FakeSource.sinks.append(sink)

    async def wait_ready(self, timeout: float) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> list[LoopStatus]:
        return []


def config(tmp_path: Path, **extra: Any) -> SalonConfig:
    data: dict[str, Any] = {
        "homeserver": {
            "url": "http://127.0.0.1:8008",
            "server_name": SERVER,
            "registration_shared_secret": "secret",
        },
        "agents": {
            "coder": {"label": "Coder", "backend": "echo"},
            "writer": {"label": "Writer", "backend": "echo"},
        },
        "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
        "data_dir": str(tmp_path / "data"),
        **extra,
    }
    return SalonConfig.model_validate(data)


@pytest.fixture
def logged_in() -> dict[str, FakeMatrixAPI]:
    """The identities the gateway logged in, on the fake homeserver, by user id."""
    return {}


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch, logged_in: dict[str, FakeMatrixAPI]) -> list[str]:
    """Every step of ``assemble`` still runs, and says when it was entered and left;
    identities log in on a fake homeserver."""
    log: list[str] = []

    def recorded(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        @asynccontextmanager
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            log.append(f"enter {name}")
            async with step(*args, **kwargs) as value:
                log.append(f"ready {name}")
                try:
                    yield value
                finally:
                    log.append(f"exit {name}")

        return wrapper

    for name in STEPS:
        monkeypatch.setattr(assemble_module, name, recorded(name, getattr(assemble_module, name)))
    hs = FakeHomeserver(SERVER)

    async def login_all(auth: Any, specs: Sequence[IdentitySpec], **kwargs: Any) -> Any:
        logged_in.update({s.user_id: hs.api(s.user_id) for s in specs})
        return {UserId(u): api for u, api in logged_in.items()}

    monkeypatch.setattr(assemble_module, "login_all", login_all)
    monkeypatch.setattr(modes_module, "ClientSyncSource", FakeSource)
    return log


def entered(log: list[str]) -> list[str]:
    return [e.split()[1] for e in log if e.startswith("ready ")]


def left(log: list[str]) -> list[str]:
    return [e.split()[1] for e in log if e.startswith("exit ")]


def statuses(api: FakeMatrixAPI) -> list[str]:
    """The heartbeat states ``api`` published, oldest first."""
    sent = api.calls_to("send_state")
    return [c["content"]["status"] for c in sent if c["event_type"] == AGENT_STATE]


async def test_stop_tears_the_steps_down_in_reverse(tmp_path: Path, steps: list[str]) -> None:
    gateway = Gateway(config(tmp_path), name="test")
    state = await gateway.start()
    assert set(state.agent_apis) == {"coder", "writer"}
    assert entered(steps) == [s for s in STEPS if s != "serving_api"]  # no api: section
    await gateway.stop()
    assert left(steps) == list(reversed(entered(steps)))
    assert gateway.state is None and gateway.store is None
    await gateway.stop()  # again: nothing left to do
    assert len(left(steps)) == len(entered(steps))


async def test_a_late_step_failing_tears_down_the_earlier_ones_in_reverse(
    tmp_path: Path,
    steps: list[str],
    logged_in: dict[str, FakeMatrixAPI],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SALON_TEST_NO_SUCH_TOKEN", raising=False)
    cfg = config(tmp_path, api={"listen": "127.0.0.1:0", "token_env": "SALON_TEST_NO_SUCH_TOKEN"})
    gateway = Gateway(cfg, name="test")
    with pytest.raises(ConfigError, match="SALON_TEST_NO_SUCH_TOKEN"):
        await gateway.start()
    failed = steps.index("enter serving_api")
    assert steps[failed + 1] == "exit reloading", "the API step failed, last"
    assert left(steps) == list(reversed(entered(steps)))
    assert entered(steps) == list(STEPS[:-1])
    assert gateway.state is None
    # The registry's teardown ran with the HTTP session still open: agents say offline.
    for user in ("@salon_coder:localhost", "@salon_writer:localhost"):
        assert statuses(logged_in[user])[-1:] == ["offline"], user


async def test_the_first_heartbeats_after_a_start_are_paced(
    tmp_path: Path, steps: list[str], logged_in: dict[str, FakeMatrixAPI]
) -> None:
    """Not all at once at the start (they held the replies back): each waits its turn
    at the door, after a grace, and goes out in the end."""
    gateway = Gateway(config(tmp_path, heartbeat={"interval_s": 1, "ttl_s": 3}), name="test")
    await gateway.start()
    try:
        running = gateway.running
        assert running is not None
        doors = {a.heartbeat.before_first for a in running.hosted}
        assert len(doors) == 1 and None not in doors, "one door for all first beats"
        for user in ("@salon_coder:localhost", "@salon_writer:localhost"):
            for _ in range(600):  # up to 30 s on a loaded machine
                if statuses(logged_in[user]):
                    break
                await asyncio.sleep(0.05)
            assert statuses(logged_in[user])[:1] == ["online"], user
    finally:
        await gateway.stop()


async def test_the_first_message_in_an_agent_room_is_answered_without_a_read(
    tmp_path: Path, steps: list[str], logged_in: dict[str, FakeMatrixAPI]
) -> None:
    """After a (re)start: no alias, member or membership look-up on the reply's path in
    an agent's own room (a hundred at once queued in the homeserver ahead of replies)."""
    person = "@alice:localhost"
    gateway = Gateway(config(tmp_path, access={"allowed_users": [person]}), name="test")
    state = await gateway.start()
    try:
        coder = logged_in["@salon_coder:localhost"]
        room = state.topology.agent_rooms[AgentId("coder")]
        reads = {k: len(coder.calls_to(k)) for k in ("joined_members", "get_state_event")}
        hello = event(room, person, "hello", received_by=coder.user_id)
        await FakeSource.sinks[-1].admit(coder.user_id, [hello])

        def answered() -> bool:
            sent = coder.calls_to("send_event")
            return any(c["content"].get("body") == "hello" for c in sent)

        await eventually(answered, timeout=10, what="the echo")
        assert {k: len(coder.calls_to(k)) for k in reads} == reads
    finally:
        await gateway.stop()


async def test_client_mode_keeps_connections_for_requests_beside_the_long_polls(
    tmp_path: Path, steps: list[str]
) -> None:
    """A /sync long-poll per identity holds a connection: with aiohttp's 100 in all, a
    hundred agents' replies waited up to 30 s for one to come back."""
    gateway = Gateway(config(tmp_path), name="test")
    await gateway.start()
    try:
        running = gateway.running
        assert running is not None
        connector = running.homeserver.session.connector
        assert connector is not None
        assert connector.limit == 100 + 3, "two agents' and the router's long-polls besides"
    finally:
        await gateway.stop()


async def test_at_info_a_message_answered_logs_one_line_its_turns_close(
    tmp_path: Path, steps: list[str], logged_in: dict[str, FakeMatrixAPI]
) -> None:
    """Operators get a line per turn at ``info``; the routing and the start of a first
    attempt are ``debug`` (three lines a message cost more than the rest of it)."""
    person = "@alice:localhost"
    log_file = tmp_path / "salon.log"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    salon_log.configure("info", file=log_file, console_level="error")
    # No logger keeps this configuration once the test is over (later tests capture).
    structlog.configure(cache_logger_on_first_use=False)
    gateway = Gateway(config(tmp_path, access={"allowed_users": [person]}), name="test")
    try:
        state = await gateway.start()
        coder = logged_in["@salon_coder:localhost"]
        room = state.topology.agent_rooms[AgentId("coder")]
        hello = event(room, person, "hello", received_by=coder.user_id)
        await FakeSource.sinks[-1].admit(coder.user_id, [hello])

        def lines() -> list[dict[str, Any]]:
            logged = [json.loads(line) for line in log_file.read_text().splitlines()]
            return [
                e for e in logged if e["event"] in ("event.routed", "turn.started", "turn.closed")
            ]

        await eventually(lambda: bool(lines()), timeout=10, what="the turn's line")
        await gateway.stop()
        [closed] = lines()
        assert closed["event"] == "turn.closed" and closed["level"] == "info"
        assert closed["state"] == "replied" and closed["turn"] == hello.event_id
        assert closed["room_id"] == room and closed["seconds"] >= 0
    finally:
        await gateway.stop()
        for handler in list(root.handlers):  # as it was: later tests capture their own logs
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
