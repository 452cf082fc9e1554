"""Running one turn: ledger, typing notice, backend, reply or visible error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

from salon import responses
from salon._exceptions import BackendError, MatrixError
from salon.agents.backend import TurnRequest
from salon.agents.runtime import AgentRuntime
from salon.gateway.replies import reply_content, txn_id
from salon.ids import AgentId
from salon.matrix.api import MatrixAPI
from salon.matrix.events import InboundEvent
from salon.metrics import TURNS
from salon.store import Store
from salon.store.records import TurnState

EventLoader = Callable[[str], Awaitable[InboundEvent | None]]


def turn_request(event: InboundEvent, agent_id: AgentId) -> TurnRequest:
    """The backend's view of a Matrix message (no Matrix types cross this line)."""
    thread = event.thread_root
    key = f"agent:{agent_id}:matrix:{event.room_id}" + (f":thread:{thread}" if thread else "")
    return TurnRequest(
        agent_id=agent_id,
        sender=event.sender,
        text=event.body,
        session_key=key,
        chat_id=event.room_id,
    )


class TurnRunner:
    """Runs turns concurrently, each at most once at a time, bounded in attempts."""

    def __init__(
        self,
        store: Store,
        agents: Mapping[AgentId, AgentRuntime],
        apis: Mapping[AgentId, MatrixAPI],
        *,
        locale: str = "en",
        max_attempts: int = 3,
        concurrency: int = 32,
        retry_delay_s: float = 2.0,
    ) -> None:
        self.store = store
        self.agents = agents
        self.apis = apis
        self.locale = locale
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[tuple[str, AgentId], asyncio.Task[None]] = {}

    def launch(self, event: InboundEvent, agent_id: AgentId) -> None:
        """Start the turn of ``agent_id`` for ``event`` unless it is already running."""
        key = (event.event_id, agent_id)
        if key in self._tasks:
            return
        task = asyncio.create_task(self._run(event, agent_id), name=f"turn:{agent_id}")
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._forget(key, t))

    def _forget(self, key: tuple[str, AgentId], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    def in_flight(self) -> list[tuple[str, AgentId]]:
        """Turns running in this process."""
        return list(self._tasks)

    async def resume_unfinished(self, load_event: EventLoader) -> None:
        """Relaunch turns a crash or restart interrupted."""
        for record in await self.store.turns.unfinished():
            if record.agent_id not in self.agents:
                continue
            event = await load_event(record.event_id)
            if event is not None:
                self.launch(event, AgentId(record.agent_id))

    async def stop(self) -> None:
        """Cancel running turns; their ledger rows stay open and resume next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, event: InboundEvent, agent_id: AgentId) -> None:
        async with self._slots:
            retry = await self._attempt(event, agent_id)
        if retry:
            await asyncio.sleep(self.retry_delay_s)
            self._tasks.pop((event.event_id, agent_id), None)
            self.launch(event, agent_id)

    async def _attempt(self, event: InboundEvent, agent_id: AgentId) -> bool:
        """One attempt; returns True when it should be retried."""
        runtime, api = self.agents[agent_id], self.apis[agent_id]
        log = runtime.log.bind(event_id=event.event_id, room_id=event.room_id)
        record = await self.store.turns.start(event.event_id, agent_id)
        if record.attempts > self.max_attempts:
            body = responses.text(
                "turn_gave_up", self.locale, agent=runtime.label, attempts=self.max_attempts
            )
            await self._close(event, agent_id, api, body, "gave-up", error="attempts exhausted")
            return False
        try:
            await api.set_typing(event.room_id, True)
            try:
                text = await runtime.reply(turn_request(event, agent_id))
            except BackendError as e:
                log.warning("turn.backend_error", error=str(e))
                body = responses.text("backend_error", self.locale, agent=runtime.label, error=e)
                await self._close(event, agent_id, api, body, "error", error=str(e))
                return False
            except Exception as e:  # a buggy backend must not kill the runner
                log.exception("turn.backend_crashed")
                body = responses.text(
                    "backend_error", self.locale, agent=runtime.label, error=type(e).__name__
                )
                await self._close(event, agent_id, api, body, "error", error=repr(e))
                return False
            content = reply_content(event, agent_id, text)
            reply_id = await api.send_event(
                event.room_id, "m.room.message", content, txn_id=txn_id(event.event_id, agent_id, 0)
            )
            await self.store.turns.finish(
                event.event_id, agent_id, TurnState.REPLIED, reply_event_id=reply_id
            )
            TURNS.labels(agent=agent_id, state="replied").inc()
            log.info("turn.replied", reply_event_id=reply_id)
            return False
        except MatrixError as e:
            # The homeserver failed us mid-turn: the ledger row stays open; try again.
            log.warning("turn.matrix_error", error=str(e), attempt=record.attempts)
            return True
        finally:
            with contextlib.suppress(MatrixError):
                await api.set_typing(event.room_id, False)

    async def _close(
        self,
        event: InboundEvent,
        agent_id: AgentId,
        api: MatrixAPI,
        body: str,
        part: str,
        *,
        error: str,
    ) -> None:
        content = reply_content(event, agent_id, body, notice=True)
        notice_id = await api.send_event(
            event.room_id, "m.room.message", content, txn_id=txn_id(event.event_id, agent_id, part)
        )
        await self.store.turns.finish(
            event.event_id, agent_id, TurnState.FAILED, reply_event_id=notice_id, error=error
        )
        TURNS.labels(agent=agent_id, state="failed").inc()
