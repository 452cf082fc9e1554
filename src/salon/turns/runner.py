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

import structlog

from salon import responses
from salon._exceptions import BackendError, MatrixError, StoreError
from salon.agents.approval import Approver
from salon.agents.attachments import AttachmentWire
from salon.agents.context import lending_context
from salon.agents.runtime import AgentRuntime
from salon.agents.tools import Delegator
from salon.ids import AgentId, EventId
from salon.matrix.api import MatrixAPI
from salon.metrics import (
    FIRST_CHUNK_SECONDS,
    TURN_DEADLINES,
    TURN_SECONDS,
    TURNS,
)
from salon.store import Store
from salon.store.leases import Holder
from salon.store.records import TurnRecord, TurnState
from salon.store.saved import Decision
from salon.turns.claims import finish_held
from salon.turns.deadline import DeadlineExceeded, within
from salon.turns.files import ReplyFiles, recorded_text
from salon.turns.outcomes import OutcomeSender, caller_reads_it, failure, must_store
from salon.turns.resume import resume_claimable
from salon.turns.settings import TurnSettings
from salon.turns.signals import SlowSignals
from salon.turns.slots import TurnSlots
from salon.turns.spec import (
    REPLY_KINDS,
    Outcome,
    OutcomeState,
    TurnKind,
    TurnSpec,
    deadline_of,
    prepare_request,
    turn_request,
)
from salon.turns.stream import ReplyStream, ReplyTarget, ResumePoint
from salon.turns.tasks import TurnKey, TurnTasks
from salon.turns.tooling import ToolsFor, turn_context
from salon.turns.watchers import Watchers

log = structlog.get_logger("salon.turns.runner")

AfterClose = Callable[[TurnSpec, Outcome], Awaitable[None]]


class TurnRunner(TurnTasks):
    """Runs ledgered turns concurrently, each at most once at a time."""

    def __init__(
        self,
        store: Store,
        agents: Mapping[AgentId, AgentRuntime],
        apis: Mapping[AgentId, MatrixAPI],
        *,
        settings: TurnSettings | None = None,
        slots: TurnSlots | None = None,
        holder: Holder | None = None,
    ) -> None:
        settings = settings or TurnSettings()
        self.store = store
        self.agents = agents
        self.apis = apis
        self.limits = settings.limits
        self.policy = settings.policy
        self.slots = slots or TurnSlots()
        self.delivery = settings.delivery
        self.locale = settings.locale
        self.holder = holder  # this process's claims on turns (None: the only process)
        # Set by the delegation wiring (gateway/delegated_turns.py), if delegation is on.
        self.delegator_for: Callable[[TurnSpec], Awaitable[Delegator | None]] | None = None
        # Set by the approvals wiring (gateway/approvals.py), if calls need approval.
        self.approver_for: Callable[[TurnSpec], Approver | None] | None = None
        self.tools_for: ToolsFor | None = None  # an agent's MCP tools (app/steps.py)
        self.files = ReplyFiles(store, agents, self.delivery, self.locale)
        self.outcomes = OutcomeSender(self.delivery, self.files, self.locale)
        self.watchers = Watchers()
        self.outcomes.by_kind[TurnKind.API] = caller_reads_it
        # Told when an agent's turn is slow ("busy"), and when it has none left; unawaited.
        self.on_slow: Callable[[AgentId], None] | None = None
        self.on_idle: Callable[[AgentId], None] | None = None
        # Per kind, and for any turn: what happens once a turn closed (a report marks
        # its result delivered; delegation results it left behind).
        self.after_close: dict[TurnKind, AfterClose] = {}
        self.closed_hooks: list[AfterClose] = []
        # How http backends get the turns' files (the composition root sets it).
        self.wire = AttachmentWire()
        self._running: dict[AgentId, int] = {}
        super().__init__()
        self._started: dict[TurnKey, bool] = {}  # holds its slots (no longer queued)
        self._began: dict[TurnKey, float] = {}  # when each running turn's attempt began

    # --- starting turns --------------------------------------------------------

    async def submit(self, spec: TurnSpec, *, decision: Decision | None = None) -> bool:
        """Ledger the turn (idempotent) and run it; True if it was new. ``decision``:
        the routing decision that chose it, written with its admission."""
        if spec.agent_id not in self.agents:
            raise KeyError(f"agent {spec.agent_id!r} is not hosted here")
        holder = self.holder
        new = await self.store.turns.admit(
            spec.turn_id,
            spec.agent_id,
            spec.room_id,
            kind=spec.kind.value,
            spec=spec.to_json(),
            owner=None if holder is None else holder.owner,
            lease_until=0 if holder is None else holder.until(),
            along=() if decision is None else (self.store.decisions.statement(decision),),
        )
        self.launch(spec)
        return new

    def refusal(self, spec: TurnSpec) -> str | None:
        """Why ``spec`` should be refused, not queued (see :meth:`TurnSlots.refusal`)."""
        return self.slots.refusal(spec.agent_id, spec.slot_sender or spec.sender)

    async def resume_unfinished(self) -> int:
        """Relaunch the turns a crash or restart interrupted (with several processes:
        those no live process holds, see :mod:`salon.turns.resume`); returns how many."""
        return await resume_claimable(self)

    # --- running ------------------------------------------------------------------

    async def _run(self, spec: TurnSpec) -> None:
        failures = 0
        try:
            while True:
                try:
                    await self._queued(spec)
                    return
                except StoreError as e:
                    if not e.transient:
                        # A bug, not weather: never loop on it; close the turn if possible.
                        log.exception("turn.store_failed", turn=spec.turn_id)
                        with contextlib.suppress(StoreError):
                            await finish_held(
                                self.store, self.holder, spec.key, TurnState.FAILED, error=str(e)
                            )
                        return
                    # The store is busy or failing: not the turn's fault. Give the attempt
                    # back and run it again after a pause (never strand the ledger row).
                    failures += 1
                    log.warning("turn.store_error", turn=spec.turn_id, error=str(e))
                    with contextlib.suppress(StoreError):
                        await self.store.turns.release(spec.turn_id, spec.agent_id)
                    await asyncio.sleep(self.delivery.delay(failures))
        except asyncio.CancelledError:
            if spec.key not in self._stop_requested or self._started.get(spec.key):
                raise
            # Stopped while waiting for a slot: it never ran, and is not owed any more.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            stopped, why = TurnState.STOPPED, "stopped before it ran"
            await finish_held(self.store, self.holder, spec.key, stopped, error=why)
            TURNS.labels(agent=spec.agent_id, state=TurnState.STOPPED.value).inc()
        finally:
            self._started.pop(spec.key, None)

    async def _queued(self, spec: TurnSpec) -> None:
        async with self.slots.hold(spec.agent_id, spec.slot_sender or spec.sender) as lease:
            self._started[spec.key] = True
            self._running[spec.agent_id] = self._running.get(spec.agent_id, 0) + 1
            try:
                with lending_context(lease.lend):  # a delegation's wait frees the slots
                    await self._attempt(spec)
            finally:
                self._running[spec.agent_id] -= 1
                if not self._running[spec.agent_id] and self.on_idle is not None:
                    self.on_idle(spec.agent_id)

    async def _attempt(self, spec: TurnSpec) -> None:
        holder = self.holder
        record = await self.store.turns.start(
            spec.turn_id,
            spec.agent_id,
            None if holder is None else holder.owner,
            0 if holder is None else holder.until(),
        )
        if record is None:
            return  # closed already (a replayed admission), or another process runs it
        self._began[spec.key] = time.monotonic()
        if record.attempts > 1:
            self._reruns.add(spec.key)
        runtime = self.agents[spec.agent_id]
        tlog = runtime.log.bind(turn=spec.turn_id, kind=spec.kind.value)
        # One info line per turn, when it closes (a re-run after a crash is news too).
        (tlog.info if record.attempts > 1 else tlog.debug)("turn.started", attempt=record.attempts)
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

        async def on_first(reply_id: EventId, final: bool) -> None:
            self._replies[reply_id] = spec.key
            if not final:
                await self.store.turns.set_reply(spec.turn_id, spec.agent_id, reply_id)
            # A reply sent whole (the echo backend's, a short one) is stored by the turn's
            # close, one write fewer a message. A crash before that close leaves the same
            # as a crash before this write did: a re-run that knows no reply id sends the
            # first message again with its transaction id (the homeserver gives back the
            # same event) and ends on the final edit (see turns.stream).

        first = EventId(record.reply_event_id) if record.reply_event_id else None
        return ReplyStream(
            self.apis[spec.agent_id],
            ReplyTarget(spec.room_id, spec.reply_to, spec.agent_id, spec.turn_id),
            self.limits,
            delivery=self.delivery,
            on_first=on_first,
            resume=ResumePoint(first, rerun=record.attempts > 1),
        )

    async def _produce(
        self,
        spec: TurnSpec,
        runtime: AgentRuntime,
        stream: ReplyStream | None,
        tlog: structlog.typing.FilteringBoundLogger,
    ) -> Outcome:
        """Run the backend; every way it can end becomes an outcome (but shutdown)."""
        deadline_s = deadline_of(spec, self.policy)
        signals = (
            None
            if not spec.room_id
            else SlowSignals(
                self.apis[spec.agent_id],
                spec,
                lambda: stream is not None and stream.first_id is not None,
                after_s=self.policy.typing_after_s,
                on_slow=self.on_slow,
            )
        )
        collected: list[str] = []
        try:
            request = await prepare_request(runtime, spec)
            # Set before the stream's task starts, so the backend sees it.
            with await turn_context(self, spec) as box:
                began = time.monotonic()

                def first_chunk() -> None:
                    FIRST_CHUNK_SECONDS.labels(agent=spec.agent_id).observe(
                        time.monotonic() - began
                    )

                chunks = within(runtime.stream(request), deadline_s, on_first=first_chunk)
                text = await self._consume(spec.key, chunks, stream, collected)
            if stream is not None and stream.cut:
                text += responses.text("reply_cut", self.locale, chars=self.limits.max_reply_chars)
            return await self.files.outcome(spec, text, box.files)
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
            partial = _partial(stream, collected)
            return failure(self.locale, runtime, partial, shown, "deadline", "deadline")
        except BackendError as e:
            tlog.warning("turn.backend_error", error=str(e))
            partial = _partial(stream, collected)
            return failure(self.locale, runtime, partial, str(e), str(e), type(e).__name__)
        except StoreError:
            raise  # the store's trouble, not the backend's: the turn is run again
        except MatrixError as e:
            # A permanent refusal while streaming (403, 404): the room will not take it.
            tlog.warning("turn.matrix_error", error=str(e))
            return Outcome(OutcomeState.FAILED, _partial(stream, collected), error=str(e))
        except Exception as e:  # a buggy backend must not kill the runner
            tlog.exception("turn.crashed")
            partial = _partial(stream, collected)
            return failure(self.locale, runtime, partial, type(e).__name__, repr(e), "crash")
        finally:
            if signals is not None:
                signals.cancel()

    async def _consume(
        self,
        key: TurnKey,
        chunks: AsyncIterator[str],
        stream: ReplyStream | None,
        collected: list[str],
    ) -> str:
        if stream is not None:
            return await stream.run(chunks)
        cap = self.limits.max_reply_chars
        async for chunk in chunks:
            self.watchers.chunk(key, chunk)
            collected.append(chunk)
            if sum(map(len, collected)) >= cap:
                break
        return "".join(collected)[:cap]

    def _interrupted(self, key: TurnKey) -> None:
        # Shutdown held or cut off the turn: whoever watches it (an API caller) hears
        # so now rather than waiting on a process that is going away.
        self.watchers.closed(key, Outcome(OutcomeState.FAILED, error="interrupted by shutdown"))

    # --- ending -----------------------------------------------------------------------

    async def _keep(self, spec: TurnSpec, outcome: Outcome) -> None:
        kept = self.files.progress(spec, outcome)  # with its files' uploads and sends
        await self.store.turns.set_output(spec.turn_id, spec.agent_id, kept.to_json())
        await self.store.turns.release(spec.turn_id, spec.agent_id)

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
        self._settling.add(spec.key)  # decided: a stop request no longer applies
        try:
            reply_id = await self.outcomes.send(spec, outcome, stream, self.apis[spec.agent_id])
        except asyncio.CancelledError:
            # Shutdown while sending (an outage being waited out, say): keep the outcome
            # and give the attempt back, so the next start sends it without a re-run.
            with contextlib.suppress(StoreError):
                await asyncio.shield(self._keep(spec, outcome))
            raise
        except MatrixError as e:  # permanent: nothing more can be sent there
            tlog.warning("turn.undeliverable", error=str(e))
            outcome = Outcome(OutcomeState.FAILED, outcome.text, error=f"undeliverable: {e}")
            reply_id = None
        if outcome.state is not OutcomeState.FAILED and not spec.stateless:
            runtime = self.agents[spec.agent_id]
            await runtime.record(turn_request(spec), spec.turn_id, recorded_text(outcome))
        state = TurnState(outcome.state.value)
        closed = await finish_held(
            self.store, self.holder, spec.key, state, reply_event_id=reply_id, error=outcome.error
        )
        if not closed:
            return  # another process holds the turn now: its close is that one's
        TURNS.labels(agent=spec.agent_id, state=state.value).inc()
        began = self._began.pop(spec.key, None)
        seconds = None if began is None else time.monotonic() - began
        if seconds is not None:
            TURN_SECONDS.labels(agent=spec.agent_id, outcome=state.value).observe(seconds)
        tlog.info(
            "turn.closed",
            state=state.value,
            reply_event_id=reply_id,
            room_id=spec.room_id,
            seconds=None if seconds is None else round(seconds, 3),
        )
        self.watchers.closed(spec.key, outcome)
        after = self.after_close.get(spec.kind)
        if after is not None:
            await after(spec, outcome)
        for hook in self.closed_hooks:
            await hook(spec, outcome)


def _partial(stream: ReplyStream | None, collected: list[str]) -> str:
    return stream.text if stream is not None else "".join(collected)
