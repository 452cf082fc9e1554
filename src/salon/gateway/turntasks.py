"""Which turns run in this process, and stopping them (`!stop`, 🛑, shutdown).

The bookkeeping half of the turn runner: one task per ledgered turn, the room
it writes in and its reply's first event, so a stop request finds its turn.
"""

from __future__ import annotations

import asyncio

import structlog

from salon.gateway.turnspec import TurnSpec
from salon.ids import AgentId, EventId, RoomId

log = structlog.get_logger("salon.gateway.turns")

TurnKey = tuple[str, AgentId]


class TurnTasks:
    """The running turns' tasks; subclasses say how a turn runs (``_run``)."""

    def __init__(self) -> None:
        self._tasks: dict[TurnKey, asyncio.Task[None]] = {}
        self._rooms: dict[TurnKey, RoomId] = {}
        self._replies: dict[EventId, TurnKey] = {}
        self._stop_requested: set[TurnKey] = set()

    async def _run(self, spec: TurnSpec) -> None:
        raise NotImplementedError

    def launch(self, spec: TurnSpec) -> None:
        """Run a ledgered turn unless it is already running in this process."""
        key = spec.key
        if key in self._tasks:
            return
        task = asyncio.create_task(self._run(spec), name=f"turn:{spec.agent_id}")
        self._tasks[key] = task
        self._rooms[key] = spec.room_id
        task.add_done_callback(lambda t: self._forget(key, t))

    def _forget(self, key: TurnKey, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
            self._rooms.pop(key, None)
            self._stop_requested.discard(key)
            for reply, k in list(self._replies.items()):
                if k == key:
                    del self._replies[reply]
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("turn.task_failed", turn=key[0], agent=key[1], error=repr(error))

    def in_flight(self) -> list[TurnKey]:
        """Turns running in this process."""
        return list(self._tasks)

    def stop_in_room(self, room_id: str) -> int:
        """Stop every reply being written in a room (`!stop`); returns how many."""
        keys = [k for k, r in self._rooms.items() if r == room_id]
        for key in keys:
            self._request_stop(key)
        return len(keys)

    def stop_reply(self, reply_event_id: str) -> bool:
        """Stop the reply whose first event is ``reply_event_id`` (a 🛑 reaction)."""
        key = self._replies.get(EventId(reply_event_id))
        if key is None:
            return False
        self._request_stop(key)
        return True

    def _request_stop(self, key: TurnKey) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self._stop_requested.add(key)
            task.cancel()

    async def stop(self) -> None:
        """Cancel running turns; their ledger rows stay open and resume on next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
