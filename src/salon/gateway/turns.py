"""Running one turn: ledger, typing, streamed reply, session, stop, visible errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import structlog

from salon import responses
from salon._exceptions import BackendError, MatrixError
from salon.agents.backend import TurnRequest
from salon.agents.context import delegator_context
from salon.agents.runtime import AgentRuntime
from salon.agents.tools import Delegator
from salon.gateway.replies import reply_content, txn_id
from salon.gateway.stream import ReplyStream, StreamLimits
from salon.ids import AgentId, EventId, RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.metrics import TURNS
from salon.store import Store
from salon.store.records import TurnState

EventLoader = Callable[[str], Awaitable[InboundEvent | None]]
TurnKey = tuple[str, AgentId]


def session_key(event: InboundEvent, agent_id: str) -> str:
    """``agent:<id>:matrix:<room>[:thread:<root>]``: a thread is a conversation of its own."""
    thread = event.thread_root
    return f"agent:{agent_id}:matrix:{event.room_id}" + (f":thread:{thread}" if thread else "")


def turn_request(event: InboundEvent, agent_id: AgentId) -> TurnRequest:
    """The backend's view of a Matrix message (no Matrix types cross this line)."""
    return TurnRequest(
        agent_id=agent_id,
        sender=event.sender,
        text=event.body,
        session_key=session_key(event, agent_id),
        chat_id="",
    )


class TurnRunner:
    """Runs turns concurrently, each at most once at a time, bounded in attempts."""

    def __init__(
        self,
        store: Store,
        agents: Mapping[AgentId, AgentRuntime],
        apis: Mapping[AgentId, MatrixAPI],
        *,
        limits: StreamLimits | None = None,
        locale: str = "en",
        max_attempts: int = 3,
        concurrency: int = 32,
        retry_delay_s: float = 2.0,
        delegator_for: Callable[[AgentId, InboundEvent], Delegator | None] | None = None,
    ) -> None:
        self.store = store
        self.agents = agents
        self.apis = apis
        self.limits = limits or StreamLimits()
        self.locale = locale
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.delegator_for = delegator_for
        # Told when an agent starts being busy (first turn) and stops (last turn ends).
        self.on_busy: Callable[[AgentId, bool], Awaitable[None]] | None = None
        self._busy: dict[AgentId, int] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[TurnKey, asyncio.Task[None]] = {}
        self._rooms: dict[TurnKey, RoomId] = {}
        self._replies: dict[EventId, TurnKey] = {}
        self._stop_requested: set[TurnKey] = set()

    def launch(self, event: InboundEvent, agent_id: AgentId) -> None:
        """Start the turn of ``agent_id`` for ``event`` unless it is already running."""
        key = (event.event_id, agent_id)
        if key in self._tasks:
            return
        task = asyncio.create_task(self._run(event, agent_id), name=f"turn:{agent_id}")
        self._tasks[key] = task
        self._rooms[key] = event.room_id
        task.add_done_callback(lambda t: self._forget(key, t))

    def _forget(self, key: TurnKey, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
            self._rooms.pop(key, None)
            self._stop_requested.discard(key)
            for reply, k in list(self._replies.items()):
                if k == key:
                    del self._replies[reply]

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

    async def resume_unfinished(self, load_event: EventLoader) -> None:
        """Relaunch turns a crash or restart interrupted."""
        for record in await self.store.turns.unfinished():
            if record.agent_id not in self.agents:
                continue
            event = await load_event(record.event_id)
            if event is not None:
                self.launch(event, AgentId(record.agent_id))

    async def stop(self) -> None:
        """Cancel running turns; their ledger rows stay open and resume on next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, event: InboundEvent, agent_id: AgentId) -> None:
        async with self._slots:
            await self._set_busy(agent_id, +1)
            try:
                retry = await self._attempt(event, agent_id)
            finally:
                await self._set_busy(agent_id, -1)
        if retry:
            await asyncio.sleep(self.retry_delay_s)
            self._tasks.pop((event.event_id, agent_id), None)
            self.launch(event, agent_id)

    async def _set_busy(self, agent_id: AgentId, delta: int) -> None:
        count = self._busy.get(agent_id, 0) + delta
        self._busy[agent_id] = count
        if self.on_busy is not None and ((delta > 0 and count == 1) or count == 0):
            try:
                await asyncio.shield(self.on_busy(agent_id, count > 0))
            except Exception as e:  # the status line is cosmetic; the turn is not
                structlog.get_logger("salon.gateway.turns").debug("busy.failed", error=str(e))

    async def _attempt(self, event: InboundEvent, agent_id: AgentId) -> bool:
        """One attempt; returns True when it should be retried."""
        runtime, api = self.agents[agent_id], self.apis[agent_id]
        key = (event.event_id, agent_id)
        log = runtime.log.bind(event_id=event.event_id, room_id=event.room_id)
        record = await self.store.turns.start(event.event_id, agent_id)
        if record is None:
            log.info("turn.already_closed")  # a replayed admission
            return False
        log.info("turn.started", attempt=record.attempts)
        if record.attempts > self.max_attempts:
            body = responses.text(
                "turn_gave_up", self.locale, agent=runtime.label, attempts=self.max_attempts
            )
            await self._notice(event, agent_id, api, body, "gave-up")
            await self._close(event, agent_id, TurnState.FAILED, error="attempts exhausted")
            return False

        async def on_first(reply_id: EventId) -> None:
            self._replies[reply_id] = key
            await self.store.turns.set_reply(event.event_id, agent_id, reply_id)

        reply = ReplyStream(api, event, agent_id, self.limits, on_first=on_first)
        request = turn_request(event, agent_id)
        try:
            await api.set_typing(event.room_id, True, 60000)
            request = await runtime.prepare(request)
            delegator = self.delegator_for(agent_id, event) if self.delegator_for else None
            # Set before the stream's task starts, so the backend sees it.
            with delegator_context(delegator):
                text = await reply.run(runtime.stream(request))
            reply_id = await reply.finish(text or responses.text("empty_reply", self.locale))
            await runtime.record(request, event.event_id, text)
            await self._close(event, agent_id, TurnState.REPLIED, reply_id=reply_id)
            log.info("turn.replied", reply_event_id=reply_id, edits=reply.edits_sent)
            return False
        except asyncio.CancelledError:
            if key not in self._stop_requested:
                raise  # shutdown: the ledger row stays open and the turn resumes next start
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            await self._stopped(event, agent_id, runtime, request, reply)
            return False
        except BackendError as e:
            log.warning("turn.backend_error", error=str(e))
            await self._failed(event, agent_id, runtime, reply, str(e), str(e))
            return False
        except MatrixError as e:
            # The homeserver failed us mid-turn: the ledger row stays open; try again.
            log.warning("turn.matrix_error", error=str(e), attempt=record.attempts)
            return True
        except Exception as e:  # a buggy backend must not kill the runner
            log.exception("turn.crashed")
            await self._failed(event, agent_id, runtime, reply, type(e).__name__, repr(e))
            return False
        finally:
            with contextlib.suppress(MatrixError):
                await api.set_typing(event.room_id, False)

    async def _stopped(
        self,
        event: InboundEvent,
        agent_id: AgentId,
        runtime: AgentRuntime,
        request: TurnRequest,
        reply: ReplyStream,
    ) -> None:
        marker = responses.text("reply_stopped", self.locale)
        text = f"{reply.text}\n\n{marker}" if reply.text else marker
        reply_id = await reply.finish(text)
        await runtime.record(request, event.event_id, reply.text)
        await self._close(event, agent_id, TurnState.STOPPED, reply_id=reply_id, error="stopped")
        runtime.log.info("turn.stopped", event_id=event.event_id)

    async def _failed(
        self,
        event: InboundEvent,
        agent_id: AgentId,
        runtime: AgentRuntime,
        reply: ReplyStream,
        shown: str,
        error: str,
    ) -> None:
        if reply.first_id is not None:
            await reply.finish(reply.text)  # settle the partial reply before the notice
        body = responses.text("backend_error", self.locale, agent=runtime.label, error=shown)
        notice_id = await self._notice(event, agent_id, self.apis[agent_id], body, "error")
        await self._close(event, agent_id, TurnState.FAILED, reply_id=notice_id, error=error)

    async def _notice(
        self, event: InboundEvent, agent_id: AgentId, api: MatrixAPI, body: str, part: str
    ) -> EventId:
        content = reply_content(event, agent_id, body, notice=True)
        return await api.send_event(
            event.room_id, "m.room.message", content, txn_id=txn_id(event.event_id, agent_id, part)
        )

    async def _close(
        self,
        event: InboundEvent,
        agent_id: AgentId,
        state: TurnState,
        *,
        reply_id: str | None = None,
        error: str | None = None,
    ) -> None:
        await self.store.turns.finish(
            event.event_id, agent_id, state, reply_event_id=reply_id, error=error
        )
        TURNS.labels(agent=agent_id, state=state.value).inc()
