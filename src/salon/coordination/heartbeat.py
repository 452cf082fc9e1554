"""Each agent's ``com.salon.agent.state`` heartbeat in its own room."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from salon.ids import RoomId
from salon.matrix.api import MatrixAPI
from salon.supervisor import LoopHandle

AGENT_STATE = "com.salon.agent.state"


class AgentStatus(StrEnum):
    ONLINE = "online"
    BUSY = "busy"
    OFFLINE = "offline"


class AgentState(BaseModel):
    """The heartbeat payload, version 1."""

    model_config = ConfigDict(extra="allow", frozen=True)

    v: int = 1
    status: AgentStatus
    heartbeat_ts: int = Field(ge=0)
    ttl_s: int = Field(gt=0)  # Matrix event JSON allows no floats
    gateway: str = ""
    agent: str = ""


def parse_state(content: Any) -> AgentState | None:
    """The heartbeat in a state event's content, or None if it is malformed."""
    try:
        return AgentState.model_validate(content)
    except ValidationError:
        return None


def effective_status(state: AgentState | None, now_ms: int | None = None) -> AgentStatus:
    """What a heartbeat means now: a beat older than its TTL means offline."""
    if state is None:
        return AgentStatus.OFFLINE
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if now - state.heartbeat_ts > state.ttl_s * 1000:
        return AgentStatus.OFFLINE
    return state.status


class Heartbeat:
    """Keeps one agent's state event fresh while the gateway runs."""

    def __init__(
        self,
        api: MatrixAPI,
        room_id: RoomId,
        *,
        agent_id: str,
        gateway: str,
        interval_s: float,
        ttl_s: float,
    ) -> None:
        self.api = api
        self.room_id = room_id
        self.agent_id = agent_id
        self.gateway = gateway
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.status = AgentStatus.ONLINE
        self._log = structlog.get_logger(f"salon.agent.{agent_id}")
        self._working = False
        self._busy_published_at = -math.inf
        self._wake = asyncio.Event()
        # Awaited before the first beat (a start paces them: see steps.heartbeats).
        self.before_first: Callable[[], Awaitable[None]] | None = None

    async def beat(self, status: AgentStatus | None = None) -> None:
        """Publish the current status with a fresh timestamp."""
        if status is not None:
            self.status = status
        state = AgentState(
            status=self.status,
            heartbeat_ts=int(time.time() * 1000),
            ttl_s=math.ceil(self.ttl_s),
            gateway=self.gateway,
            agent=self.agent_id,
        )
        await self.api.send_state(
            self.room_id, AGENT_STATE, state.model_dump(mode="json"), self.api.user_id
        )

    def busy(self) -> None:
        """A turn of this agent is slow: show "busy" now, unless "busy" went out less
        than one interval ago (never two state events per turn; never on the fast path)."""
        self._working = True
        now = time.monotonic()
        if self.status is not AgentStatus.BUSY and now - self._busy_published_at >= self.interval_s:
            self._busy_published_at = now
            self._wake.set()

    def idle(self) -> None:
        """No turn left: say "online" again now if "busy" was shown (a slow turn's
        second and last state event)."""
        self._working = False
        if self.status is AgentStatus.BUSY:
            self._wake.set()

    async def run(self, handle: LoopHandle) -> None:
        """Beat every ``interval_s`` (or when "busy" is due) until cancelled (supervised);
        the first once :attr:`before_first` lets it."""
        if self.before_first is not None:
            # A turn turning slow ("busy" is due) goes ahead of its turn at the door.
            door = asyncio.ensure_future(self.before_first())
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({door, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (door, woken):
                    task.cancel()
                await asyncio.gather(door, woken, return_exceptions=True)
            self.before_first = None
        while True:
            self._wake.clear()
            await self.beat(AgentStatus.BUSY if self._working else AgentStatus.ONLINE)
            handle.healthy()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def go_offline(self) -> None:
        """Say offline on a clean shutdown (best effort: the TTL covers a crash)."""
        try:
            await asyncio.wait_for(self.beat(AgentStatus.OFFLINE), timeout=5)
        except Exception as e:
            self._log.warning("heartbeat.offline_failed", error=str(e))


OFFLINE_PARALLEL = 16
"""Offline beats in flight at once at a stop."""
OFFLINE_WITHIN_S = 5.0
"""How long a stop gives the offline beats, all together."""


async def all_offline(
    beats: Iterable[Heartbeat],
    parallel: int = OFFLINE_PARALLEL,
    within_s: float = OFFLINE_WITHIN_S,
) -> int:
    """Every agent says offline on a clean stop, a few at a time and within a bound;
    returns how many did not (their TTL says it). All at once, a thousand state events
    timed out in the client but not in the homeserver, which was still writing them
    when the next start asked it for its replies."""
    slots = asyncio.Semaphore(parallel)

    async def one(beat: Heartbeat) -> None:
        async with slots:
            await beat.go_offline()

    tasks = [asyncio.create_task(one(b)) for b in beats]
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=within_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        structlog.get_logger("salon.agent").warning(
            "heartbeat.offline_skipped", agents=len(pending), within_s=within_s
        )
    return len(pending)
