"""Domain records the store hands out (frozen; serialisation stays in the store)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum


def now_ms() -> int:
    """Wall-clock milliseconds, the unit Matrix timestamps use."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class IdentityRecord:
    user_id: str
    device_id: str | None
    access_token: str | None
    sync_token: str | None
    created_at: int


class InboxState(StrEnum):
    NEW = "new"
    DONE = "done"
    DROPPED = "dropped"


@dataclass(frozen=True)
class InboxItem:
    event_id: str
    room_id: str
    sender: str
    event_type: str
    event_json: str
    origin_ts: int
    received_by: str


@dataclass(frozen=True)
class InboxRow:
    item: InboxItem
    state: InboxState
    received_at: int
    attempts: int = 0
    reason: str | None = None  # why it was handled as it was (e.g. dropped: unauthorised)


class TurnState(StrEnum):
    ADMITTED = "admitted"
    RUNNING = "running"
    REPLIED = "replied"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class TurnRecord:
    event_id: str
    agent_id: str
    room_id: str
    state: TurnState
    attempts: int
    reply_event_id: str | None
    error: str | None
    updated_at: int
    kind: str = "message"
    spec: str | None = None  # JSON of the turn's spec (how to run it again)
    output: str | None = None  # JSON of its finished outcome, once there is one
    owner: str | None = None  # the gateway process holding it (see store.leases)
    created_at: int = 0  # ms, when it was admitted

    @property
    def open(self) -> bool:
        """Admitted or running: owed to someone."""
        return self.state in (TurnState.ADMITTED, TurnState.RUNNING)


class RoomKind(StrEnum):
    SPACE = "space"
    LOBBY = "lobby"
    AGENT = "agent"
    CHAT = "chat"  # a `!new` chat, owned by one person
    BOUND = "bound"  # an existing room bound to an agent with `!agent`


@dataclass(frozen=True)
class RoomRecord:
    room_id: str
    kind: RoomKind
    agent_id: str | None
    alias: str | None
    owner: str | None
    archived: bool
    name: str | None = None
