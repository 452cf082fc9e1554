"""The one turn pipeline: every agent turn, whatever started it, runs here.

A turn is a ledger row first (:meth:`TurnRunner.submit`), then a task that holds
a fair slot, runs the backend under a wall-clock deadline and a reply-size cap,
streams a reply (or collects a result), stores the outcome, sends it with
transaction ids derived from the turn, and closes the row. A crash anywhere
leaves the row open; the next start runs it again, re-sending a stored outcome
instead of asking the backend twice. ``max_attempts`` counts only such re-runs
(turns that took the process down), never homeserver outages, which are
waited out by :class:`~salon.matrix.delivery.Delivery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from salon import responses
from salon._exceptions import BackendError, MatrixError, StoreError
from salon.agents.backend import TurnRequest
from salon.agents.context import delegator_context
from salon.agents.runtime import AgentRuntime
from salon.agents.tools import Delegator
from salon.gateway.deadline import DeadlineExceeded, within
from salon.gateway.outcomes import OutcomeSender, must_store
from salon.gateway.signals import slow_signals
from salon.gateway.slots import TurnSlots
from salon.gateway.stream import ReplyStream, StreamLimits
from salon.gateway.turnspec import REPLY_KINDS, Outcome, OutcomeState, TurnKind, TurnSpec
from salon.ids import AgentId, EventId, RoomId
from salon.matrix.api import MatrixAPI
from salon.matrix.delivery import Delivery
from salon.metrics import TURN_DEADLINES, TURNS
from salon.store import Store
from salon.store.records import TurnRecord, TurnState
from salon.tasks import spawn

log = structlog.get_logger("salon.gateway.turns")

TurnKey = tuple[str, AgentId]
AfterClose = Callable[[TurnSpec, Outcome], Awaitable[None]]


@dataclass(frozen=True)
class TurnPolicy:
    """Bounds on every turn."""

    max_attempts: int = 3  # runs of one turn across crashes and restarts
    deadline_s: float = 600.0  # wall-clock limit of the backend run
    typing_after_s: float = 0.3  # typing (and busy) only when the first chunk is slower


def turn_request(spec: TurnSpec) -> TurnRequest:
    """The backend's view of a turn (no Matrix types cross this line)."""
    return TurnRequest(
        agent_id=spec.agent_id,
        sender=spec.sender,
        text=spec.text,
        session_key=spec.session_key,
        chat_id="",
    )


class TurnRunner:
    """Runs ledgered turns concurrently, each at most once at a time."""

    def __init__(
        self,
        store: Store,
        agents: Mapping[AgentId, AgentRuntime],
        apis: Mapping[AgentId, MatrixAPI],
        *,
        limits: StreamLimits | None = None,
        policy: TurnPolicy | None = None,
        slots: TurnSlots | None = None,
        delivery: Delivery | None = None,
        locale: str = "en",
        delegator_for: Callable[[TurnSpec], Awaitable[Delegator | None]] | None = None,
    ) -> None:
        self.store = store
        self.agents = agents
        self.apis = apis
        self.limits = limits or StreamLimits()
        self.policy = policy or TurnPolicy()
        self.slots = slots or TurnSlots()
        self.delivery = delivery or Delivery()
        self.locale = locale
        self.delegator_for = delegator_for
        self.outcomes = OutcomeSender(self.delivery, locale)
        # Told when an agent's turn turns out slow (publish "busy"), and when it has
        # no turn left; neither is awaited on the path of a reply.
        self.on_slow: Callable[[AgentId], None] | None = None
        self.on_idle: Callable[[AgentId], None] | None = None
        # Per kind: what happens once a turn closed (a report marks its result delivered).
        self.after_close: dict[TurnKind, AfterClose] = {}
        self._running: dict[AgentId, int] = {}
        self._tasks: dict[TurnKey, asyncio.Task[None]] = {}
        self._rooms: dict[TurnKey, RoomId] = {}
        self._replies: dict[EventId, TurnKey] = {}
        self._stop_requested: set[TurnKey] = set()
        self._started: dict[TurnKey, bool] = {}  # holds its slots (no longer queued)

    # --- starting turns --------------------------------------------------------

    async def submit(self, spec: TurnSpec) -> bool:
        """Ledger the turn (idempotent) and run it; True if it was new."""
        if spec.agent_id not in self.agents:
            raise KeyError(f"agent {spec.agent_id!r} is not hosted here")
        new = await self.store.turns.admit(
            spec.turn_id, spec.agent_id, spec.room_id, kind=spec.kind.value, spec=spec.to_json()
        )
        self.launch(spec)
        return new

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

    async def resume_unfinished(self) -> int:
        """Relaunch the turns a crash or restart interrupted; returns how many."""
        count = 0
        for record in await self.store.turns.unfinished():
            spec = self._spec_of(record)
            if spec is not None and spec.agent_id in self.agents:
                self.launch(spec)
                count += 1
        return count

    @staticmethod
    def _spec_of(record: TurnRecord) -> TurnSpec | None:
        if not record.spec:
            return None  # a row from before specs were stored: nothing to run it from
        try:
            return TurnSpec.from_json(record.spec)
        except ValueError:
            log.warning("turn.bad_spec", turn=record.event_id, agent=record.agent_id)
            return None

    # --- stopping ---------------------------------------------------------------

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

    # --- running ------------------------------------------------------------------

    async def _run(self, spec: TurnSpec) -> None:
        try:
            await self._queued(spec)
        except asyncio.CancelledError:
            if spec.key not in self._stop_requested or self._started.get(spec.key):
                raise
            # Stopped while waiting for a slot: it never ran, and is not owed any more.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            await self.store.turns.finish(
                spec.turn_id, spec.agent_id, TurnState.STOPPED, error="stopped before it ran"
            )
            TURNS.labels(agent=spec.agent_id, state=TurnState.STOPPED.value).inc()
        finally:
            self._started.pop(spec.key, None)

    async def _queued(self, spec: TurnSpec) -> None:
        async with self.slots.hold(spec.agent_id, spec.sender):
            self._started[spec.key] = True
            self._running[spec.agent_id] = self._running.get(spec.agent_id, 0) + 1
            try:
                await self._attempt(spec)
            finally:
                self._running[spec.agent_id] -= 1
                if not self._running[spec.agent_id] and self.on_idle is not None:
                    self.on_idle(spec.agent_id)

    async def _attempt(self, spec: TurnSpec) -> None:
        record = await self.store.turns.start(spec.turn_id, spec.agent_id)
        if record is None:
            return  # closed already: a replayed admission
        runtime = self.agents[spec.agent_id]
        tlog = runtime.log.bind(turn=spec.turn_id, kind=spec.kind.value)
        tlog.info("turn.started", attempt=record.attempts)
        stream = self._stream(spec, record)
        if record.output:
            # The outcome was decided before a crash: send that, never a new one.
            await self._settle(spec, Outcome.from_json(record.output), stream, tlog)
            return
        if record.attempts > self.policy.max_attempts:
            notice = responses.text(
                "turn_gave_up", self.locale, agent=runtime.label, attempts=self.policy.max_attempts
            )
            outcome = Outcome(OutcomeState.FAILED, notice=notice, error="attempts exhausted")
            await self._settle(spec, outcome, stream, tlog)
            return
        outcome = await self._produce(spec, runtime, stream, tlog)
        await self._settle(spec, outcome, stream, tlog)

    def _stream(self, spec: TurnSpec, record: TurnRecord) -> ReplyStream | None:
        if spec.kind not in REPLY_KINDS:
            return None

        async def on_first(reply_id: EventId) -> None:
            self._replies[reply_id] = spec.key
            await self.store.turns.set_reply(spec.turn_id, spec.agent_id, reply_id)

        first = EventId(record.reply_event_id) if record.reply_event_id else None
        return ReplyStream(
            self.apis[spec.agent_id],
            spec.room_id,
            spec.reply_to,
            spec.agent_id,
            self.limits,
            txn_key=spec.turn_id,
            delivery=self.delivery,
            on_first=on_first,
            first_id=first,
            resumed=record.attempts > 1,
        )

    async def _produce(
        self,
        spec: TurnSpec,
        runtime: AgentRuntime,
        stream: ReplyStream | None,
        tlog: structlog.typing.FilteringBoundLogger,
    ) -> Outcome:
        """Run the backend; every way it can end becomes an outcome (but shutdown)."""
        deadline_s = self._deadline_s(spec)
        signals = spawn(
            slow_signals(
                self.apis[spec.agent_id],
                spec,
                lambda: stream is not None and stream.first_id is not None,
                after_s=self.policy.typing_after_s,
                on_slow=self.on_slow,
            ),
            f"slow:{spec.agent_id}",
        )
        collected: list[str] = []
        try:
            request = await runtime.prepare(turn_request(spec))
            delegator = await self.delegator_for(spec) if self.delegator_for else None
            # Set before the stream's task starts, so the backend sees it.
            with delegator_context(delegator):
                chunks = within(runtime.stream(request), deadline_s)
                text = await self._consume(chunks, stream, collected)
            if stream is not None and stream.cut:
                text += responses.text("reply_cut", self.locale, chars=self.limits.max_reply_chars)
            return Outcome(OutcomeState.REPLIED, text or responses.text("empty_reply", self.locale))
        except asyncio.CancelledError:
            if spec.key not in self._stop_requested:
                # Shutdown: not this turn's fault, so the attempt is given back.
                with contextlib.suppress(StoreError):
                    await asyncio.shield(self.store.turns.release(spec.turn_id, spec.agent_id))
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            partial = _partial(stream, collected)
            marker = responses.text("reply_stopped", self.locale)
            tlog.info("turn.stopped")
            return Outcome(
                OutcomeState.STOPPED,
                f"{partial}\n\n{marker}" if partial else marker,
                error="stopped",
            )
        except DeadlineExceeded:
            TURN_DEADLINES.labels(agent=spec.agent_id).inc()
            tlog.warning("turn.deadline", deadline_s=round(deadline_s, 1))
            shown = responses.text("turn_deadline", self.locale, seconds=math.ceil(deadline_s))
            return self._failure(runtime, _partial(stream, collected), shown, "deadline")
        except BackendError as e:
            tlog.warning("turn.backend_error", error=str(e))
            return self._failure(runtime, _partial(stream, collected), str(e), str(e))
        except MatrixError as e:
            # A permanent refusal while streaming (403, 404): the room will not take it.
            tlog.warning("turn.matrix_error", error=str(e))
            return Outcome(OutcomeState.FAILED, _partial(stream, collected), error=str(e))
        except Exception as e:  # a buggy backend must not kill the runner
            tlog.exception("turn.crashed")
            return self._failure(runtime, _partial(stream, collected), type(e).__name__, repr(e))
        finally:
            signals.cancel()

    async def _consume(
        self, chunks: AsyncIterator[str], stream: ReplyStream | None, collected: list[str]
    ) -> str:
        if stream is not None:
            return await stream.run(chunks)
        cap = self.limits.max_reply_chars
        async for chunk in chunks:
            collected.append(chunk)
            if sum(map(len, collected)) >= cap:
                break
        return "".join(collected)[:cap]

    def _failure(self, runtime: AgentRuntime, partial: str, shown: str, error: str) -> Outcome:
        notice = responses.text("backend_error", self.locale, agent=runtime.label, error=shown)
        return Outcome(OutcomeState.FAILED, partial, notice=notice, error=error)

    def _deadline_s(self, spec: TurnSpec) -> float:
        deadline = self.policy.deadline_s
        if spec.deadline_ts is not None:
            # A delegated task also ends by the deadline its delegator set.
            deadline = min(deadline, max(spec.deadline_ts / 1000 - time.time(), 0.001))
        return deadline

    # --- ending -----------------------------------------------------------------------

    async def _settle(
        self,
        spec: TurnSpec,
        outcome: Outcome,
        stream: ReplyStream | None,
        tlog: structlog.typing.FilteringBoundLogger,
    ) -> None:
        """Store the outcome, send it (waiting out outages), record the session, close."""
        if must_store(spec, outcome, stream, self.limits):
            await self.store.turns.set_output(spec.turn_id, spec.agent_id, outcome.to_json())
        try:
            reply_id = await self.outcomes.send(spec, outcome, stream, self.apis[spec.agent_id])
        except MatrixError as e:  # permanent: nothing more can be sent there
            tlog.warning("turn.undeliverable", error=str(e))
            outcome = Outcome(OutcomeState.FAILED, outcome.text, error=f"undeliverable: {e}")
            reply_id = None
        if outcome.state is not OutcomeState.FAILED:
            runtime = self.agents[spec.agent_id]
            await runtime.record(turn_request(spec), spec.turn_id, outcome.text)
        state = TurnState(outcome.state.value)
        await self.store.turns.finish(
            spec.turn_id, spec.agent_id, state, reply_event_id=reply_id, error=outcome.error
        )
        TURNS.labels(agent=spec.agent_id, state=state.value).inc()
        tlog.info("turn.closed", state=state.value, reply_event_id=reply_id)
        after = self.after_close.get(spec.kind)
        if after is not None:
            await after(spec, outcome)


def _partial(stream: ReplyStream | None, collected: list[str]) -> str:
    return stream.text if stream is not None else "".join(collected)
