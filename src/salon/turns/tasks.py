"""Which turns run in this process, and stopping them (`!stop`, 🛑, shutdown).

The bookkeeping half of the turn runner: one task per ledgered turn, the room
it writes in and its reply's first event, so a stop request finds its turn.
A graceful shutdown drains them (:meth:`TurnTasks.drain`): no turn starts any
more, the running ones get a bounded time to finish, the rest are cut off.
"""

from __future__ import annotations

import asyncio

import structlog

from salon.ids import AgentId, EventId, RoomId
from salon.turns.spec import TurnSpec

log = structlog.get_logger("salon.turns.runner")

TurnKey = tuple[str, AgentId]


class TurnTasks:
    """The running turns' tasks; subclasses say how a turn runs (``_run``)."""

    def __init__(self) -> None:
        self._tasks: dict[TurnKey, asyncio.Task[None]] = {}
        self._rooms: dict[TurnKey, RoomId] = {}
        self._replies: dict[EventId, TurnKey] = {}
        self._stop_requested: set[TurnKey] = set()
        self._settling: set[TurnKey] = set()  # outcome decided and being sent: not stoppable
        self._draining = False  # shutting down: turns are ledgered but not started
        self._reruns: set[TurnKey] = set()  # running again: an earlier attempt ran

    async def _run(self, spec: TurnSpec) -> None:
        raise NotImplementedError

    def launch(self, spec: TurnSpec) -> None:
        """Run a ledgered turn unless it is already running in this process."""
        key = spec.key
        if key in self._tasks:
            return
        if self._draining:
            # Shutting down: its ledger row stays admitted and runs after the next start.
            log.info("turn.held", turn=spec.turn_id, agent=spec.agent_id)
            self._interrupted(key)
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
            self._settling.discard(key)
            self._reruns.discard(key)
            for reply, k in list(self._replies.items()):
                if k == key:
                    del self._replies[reply]
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("turn.task_failed", turn=key[0], agent=key[1], error=repr(error))

    def is_rerun(self, key: TurnKey) -> bool:
        """Whether the turn running now is a re-run: an earlier attempt ran (here before
        a crash or a store error, or in another process)."""
        return key in self._reruns

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

    def stop_turn(self, key: TurnKey) -> bool:
        """Stop one turn (an API caller that went away); False if it is not running."""
        if key not in self._tasks:
            return False
        self._request_stop(key)
        return True

    def _request_stop(self, key: TurnKey) -> None:
        task = self._tasks.get(key)
        if task is not None and key not in self._settling:
            self._stop_requested.add(key)
            task.cancel()

    def _interrupted(self, key: TurnKey) -> None:
        """A shutdown held or cut off the turn ``key`` (its row stays open)."""

    async def drain_agent(self, agent_id: str, timeout_s: float) -> int:
        """Let one agent's running turns finish (an agent removed by a reload), up to
        ``timeout_s``; those left are cancelled and stay open. Returns how many."""
        mine = [t for k, t in self._tasks.items() if k[1] == agent_id and not t.done()]
        if mine:
            await asyncio.wait(mine, timeout=timeout_s)
        left = [t for t in mine if not t.done()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        return len(left)

    async def drain(self, timeout_s: float, *, interrupt: asyncio.Event | None = None) -> int:
        """Shut down gracefully: start no turn any more, wait up to ``timeout_s`` for
        the running ones (queued ones included) to end, then cancel those left.

        ``interrupt`` set ends the wait at once. A turn cut off keeps its ledger row
        open with its attempt given back (as on :meth:`stop`), so it resumes on the
        next start; a turn submitted from now on is ledgered and not started.
        Returns how many turns were cut off.
        """
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        interrupted = asyncio.ensure_future(interrupt.wait()) if interrupt is not None else None
        try:
            while True:
                running = {t for t in self._tasks.values() if not t.done()}
                left = deadline - loop.time()
                if not running or left <= 0 or (interrupt is not None and interrupt.is_set()):
                    break
                waits = running | ({interrupted} if interrupted is not None else set())
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if interrupted is not None:
                interrupted.cancel()
        cut = {key: task for key, task in self._tasks.items() if not task.done()}
        for task in cut.values():
            task.cancel()
        await asyncio.gather(*cut.values(), return_exceptions=True)
        for key in cut:
            log.info("turn.cut_off", turn=key[0], agent=key[1])
            self._interrupted(key)
        return len(cut)

    async def stop(self) -> None:
        """Cancel running turns; their ledger rows stay open and resume on next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
