"""Pieces for unit tests of the message path: a roster from a real config, test
backends, a turn runner wired to a fake homeserver and a real SQLite store, and
small readers of what the fake homeserver shows."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from tests.fake_matrix import JSON, FakeHomeserver, FakeMatrixAPI

from salon._exceptions import BackendError
from salon.agents.backend import TurnRequest
from salon.agents.profile import AgentProfile
from salon.agents.runtime import AgentRuntime
from salon.config.models import SalonConfig
from salon.gateway.messages import message_turn
from salon.ids import AgentId, RoomId, UserId
from salon.matrix.delivery import Delivery
from salon.matrix.events import InboundEvent, parse_event
from salon.roster import Roster
from salon.store import Store
from salon.store.records import TurnRecord
from salon.turns.runner import TurnRunner
from salon.turns.settings import TurnSettings
from salon.turns.slots import SlotLimits, TurnSlots
from salon.turns.spec import TurnPolicy, TurnSpec
from salon.turns.stream import StreamLimits

SERVER = "localhost"
ROUTER = UserId("@salon:localhost")
ALICE = UserId("@alice:localhost")
BOB = UserId("@bob:localhost")
CAROL = UserId("@carol:localhost")
CODER = AgentId("coder")
WRITER = AgentId("writer")
CODER_USER = UserId("@salon_coder:localhost")
WRITER_USER = UserId("@salon_writer:localhost")

_ids = itertools.count(1)


def make_config(**extra: Any) -> SalonConfig:
    """A two-agent deployment (coder, writer) on the fake homeserver's server name."""
    data: dict[str, Any] = {
        "homeserver": {"url": "http://127.0.0.1:8008", "server_name": SERVER},
        "agents": {
            "coder": {"label": "Coder", "description": "Writes code", "backend": "echo"},
            "writer": {"label": "Writer", "description": "Writes prose", "backend": "echo"},
        },
        **extra,
    }
    return SalonConfig.model_validate(data)


def make_roster(config: SalonConfig | None = None) -> Roster:
    """The roster of :func:`make_config` (or of ``config``)."""
    return Roster.from_config(config or make_config())


async def open_store(tmp_path: Path) -> Store:
    """A real SQLite store in ``tmp_path``."""
    return await Store.open(f"sqlite:///{tmp_path / 's.db'}")


def now_ms() -> int:
    return int(time.time() * 1000)


def event(
    room_id: str,
    sender: str,
    body: str = "hello",
    *,
    event_id: str | None = None,
    event_type: str = "m.room.message",
    content: JSON | None = None,
    received_by: str = ROUTER,
    origin_ts: int | None = None,
    state_key: str | None = None,
) -> InboundEvent:
    """An inbound event as the event source would hand it over (parsed from raw JSON)."""
    raw: JSON = {
        "event_id": event_id or f"$ev{next(_ids)}",
        "sender": sender,
        "type": event_type,
        "origin_server_ts": now_ms() if origin_ts is None else origin_ts,
        "content": content if content is not None else {"msgtype": "m.text", "body": body},
    }
    if state_key is not None:
        raw["state_key"] = state_key
    parsed = parse_event(raw, room_id, UserId(received_by))
    assert parsed is not None
    return parsed


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,  # generous: a loaded machine is slow; a pass returns at once
    what: str = "condition",
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def sample(name: str, **labels: str) -> float:
    """The current value of a Prometheus sample (0 if it was never touched)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- backends ----------------------------------------------------------------------


@dataclass
class ScriptedBackend:
    """Yields ``chunks``, sleeping ``first_delay`` before the first and ``delay``
    between the others; counts its calls and tracks how many run at once."""

    chunks: Sequence[str] = ("hello there",)
    first_delay: float = 0.0
    delay: float = 0.0
    hold: float = 0.0  # sleep after the last chunk (a turn that stays busy)
    error: str | None = None  # raise BackendError(error) after the chunks
    calls: int = 0
    running: int = 0
    max_running: int = 0
    requests: list[TurnRequest] = field(default_factory=list)
    chunks_sent: int = 0
    finished: int = 0

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        self.calls += 1
        self.requests.append(request)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.first_delay:
                await asyncio.sleep(self.first_delay)
            for i, chunk in enumerate(self.chunks):
                if i and self.delay:
                    await asyncio.sleep(self.delay)
                self.chunks_sent += 1
                yield chunk
            if self.hold:
                await asyncio.sleep(self.hold)
            if self.error is not None:
                raise BackendError(self.error)
            self.finished += 1
        finally:
            self.running -= 1


# --- a turn runner on the fake homeserver --------------------------------------------


@dataclass
class TurnRig:
    """A room with Alice, Bob, Carol and the coder agent; a runner for the coder."""

    store: Store
    hs: FakeHomeserver
    people: dict[UserId, FakeMatrixAPI]
    agent_api: FakeMatrixAPI
    room: RoomId
    backend: ScriptedBackend
    home: Path
    runner: TurnRunner = field(init=False)

    @classmethod
    async def start(
        cls,
        store: Store,
        home: Path,
        backend: ScriptedBackend | None = None,
        **runner_options: Any,
    ) -> TurnRig:
        hs = FakeHomeserver(SERVER)
        people = {u: hs.api(u) for u in (ALICE, BOB, CAROL)}
        agent_api = hs.api(CODER_USER)
        room = await people[ALICE].create_room(invite=[BOB, CAROL, CODER_USER])
        for api in (people[BOB], people[CAROL], agent_api):
            await api.join(room)
        backend = backend or ScriptedBackend()
        rig = cls(store, hs, people, agent_api, room, backend, home)
        rig.runner = rig.new_runner(**runner_options)
        return rig

    def new_runner(
        self,
        *,
        limits: StreamLimits | None = None,
        policy: TurnPolicy | None = None,
        slot_limits: SlotLimits | None = None,
        delivery: Delivery | None = None,
        backend: ScriptedBackend | None = None,
    ) -> TurnRunner:
        """A runner for the coder (a fresh one stands for a restarted process)."""
        profile = AgentProfile(CODER, "Coder", "Writes code", home=self.home / "coder")
        runtime = AgentRuntime(profile, backend or self.backend, self.store.sessions)
        return TurnRunner(
            self.store,
            {CODER: runtime},
            {CODER: self.agent_api},
            settings=TurnSettings(
                limits=limits or StreamLimits(),
                policy=policy or TurnPolicy(),
                # Short waits, so an outage in a test costs tens of milliseconds.
                delivery=delivery or Delivery(initial_s=0.02, max_s=0.1),
            ),
            slots=TurnSlots(slot_limits) if slot_limits else None,
        )

    async def message(self, body: str = "hello", sender: UserId = ALICE) -> TurnSpec:
        """``sender`` says ``body`` in the room; the coder's turn answering it."""
        api = self.people[sender]
        event_id = await api.send_event(
            self.room,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            txn_id=f"t{next(_ids)}",
        )
        raw = next(e for e in self.hs.messages_in(self.room) if e["event_id"] == event_id)
        parsed = parse_event(raw, self.room, CODER_USER)
        assert parsed is not None
        return message_turn(parsed, CODER)

    async def turn(self, spec: TurnSpec) -> TurnRecord:
        """The ledger row of ``spec`` (which must exist)."""
        record = await self.store.turns.get(spec.turn_id, spec.agent_id)
        assert record is not None
        return record

    async def closed(self, spec: TurnSpec, timeout: float = 2.0) -> TurnRecord:
        """Wait until the turn's row is closed and its task has ended; its row."""

        async def done() -> bool:
            record = await self.store.turns.get(spec.turn_id, spec.agent_id)
            return record is not None and not record.open and spec.key not in self.in_flight()

        await eventually(done, timeout, f"turn {spec.turn_id} to close")
        return await self.turn(spec)

    def in_flight(self) -> list[tuple[str, AgentId]]:
        return self.runner.in_flight()

    def agent_events(self) -> list[JSON]:
        """Every message event the coder sent, oldest first (edits included)."""
        return [e for e in self.hs.messages_in(self.room) if e["sender"] == CODER_USER]

    def replies(self) -> list[JSON]:
        """The coder's messages that are not edits."""
        return [e for e in self.agent_events() if not _is_edit(e)]

    def edits_of(self, event_id: str) -> list[JSON]:
        return [e for e in self.agent_events() if _edit_target(e) == event_id]

    def shown(self, event_id: str) -> str:
        """What a client shows for the coder's message ``event_id``: its newest edit's text."""
        edits = self.edits_of(event_id)
        if edits:
            return str(edits[-1]["content"]["m.new_content"]["body"])
        original = next(e for e in self.agent_events() if e["event_id"] == event_id)
        return str(original["content"]["body"])

    def bodies(self) -> list[str]:
        """Every body the coder's messages carried (edits as their new content)."""
        out = []
        for e in self.agent_events():
            new = e["content"].get("m.new_content")
            out.append(str((new or e["content"]).get("body", "")))
        return out


def _edit_target(e: JSON) -> str | None:
    rel = e["content"].get("m.relates_to") or {}
    return rel.get("event_id") if rel.get("rel_type") == "m.replace" else None


def _is_edit(e: JSON) -> bool:
    return _edit_target(e) is not None
