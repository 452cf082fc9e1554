"""Per-agent cron: each scheduled time of each job runs once, as a ledgered turn.

A job (``agents.<id>.cron`` in salon.yaml) has a croniter schedule in a time
zone. The scheduler sleeps until the next time any job is due, then, for each
due job, *claims* the run in the store (a row keyed by agent, job and scheduled
time) and, in the same transaction, ledgers the :data:`~TurnKind.CRON` turn
``cron:<agent>:<job>:<scheduled time>``. Only the claim's winner submits the
turn, so a scheduled time runs once however many schedulers see it (restarts,
later several processes); a crash after the claim leaves an open ledger row,
which the turn runner resumes on the next start like any other turn.

Times missed while the gateway was down (due after the job's last run, before
the scheduler started): ``catch_up: latest`` runs the most recent one once,
``none`` runs none. Several times due at once (a long pause) never make a
burst: only the latest of them runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import structlog
from croniter import CroniterError, croniter

from salon._exceptions import MatrixError, is_transient
from salon.config.agents import CRON_SECONDS_FIRST
from salon.config.models import SalonConfig
from salon.gateway.visits import VisitUse, no_visit
from salon.ids import AgentId, RoomAlias, RoomId, UserId
from salon.matrix.api import MatrixAPI
from salon.matrix.membership import join_or_be_invited
from salon.store import Store
from salon.supervisor import LoopHandle
from salon.turns.replies import ReplyTo
from salon.turns.spec import TurnKind, TurnSpec
from salon.turns.voices import room_owner

log = structlog.get_logger("salon.gateway.cron")

CatchUp = Literal["latest", "none"]
# Never sleep longer than this between checks (a wall-clock jump is noticed by then).
MAX_SLEEP_S = 60.0


class Schedule:
    """A cron expression in a time zone (6 fields: seconds first)."""

    def __init__(self, expr: str, timezone: str = "UTC") -> None:
        self.expr = expr
        self.timezone = timezone
        self._tz = ZoneInfo(timezone)

    def _iter(self, ts: float) -> croniter:
        start = datetime.fromtimestamp(ts, self._tz)
        return croniter(self.expr, start, second_at_beginning=CRON_SECONDS_FIRST)

    def next_after(self, ts: float) -> float | None:
        """The first scheduled time strictly after ``ts`` (None: there is none)."""
        try:
            return float(self._iter(ts).get_next(float))
        except CroniterError:
            return None

    def latest_at_or_before(self, ts: float) -> float | None:
        """The most recent scheduled time at or before ``ts`` (None: there is none)."""
        # Scheduled times are whole seconds: the latest one before floor(ts) + ½ is it.
        try:
            return float(self._iter(math.floor(ts) + 0.5).get_prev(float))
        except CroniterError:
            return None


@dataclass(frozen=True)
class CronJob:
    """One job of one agent, as the scheduler runs it."""

    agent_id: AgentId
    job_id: str
    schedule: Schedule
    prompt: str
    sender: str  # the agent's own user id: the turn's "who asked"
    target: str | None = None  # room alias or id; None: the agent's own room
    catch_up: CatchUp = "latest"

    @property
    def key(self) -> tuple[AgentId, str]:
        return (self.agent_id, self.job_id)

    def turn_id(self, scheduled_ts: int) -> str:
        """The ledger id of the run at ``scheduled_ts``: the same after any restart."""
        return f"cron:{self.agent_id}:{self.job_id}:{scheduled_ts}"

    def spec(self, scheduled_ts: int, room_id: RoomId) -> TurnSpec:
        """The turn of the run at ``scheduled_ts``, answered by a message in ``room_id``."""
        return TurnSpec(
            turn_id=self.turn_id(scheduled_ts),
            agent_id=self.agent_id,
            kind=TurnKind.CRON,
            room_id=room_id,
            sender=self.sender,
            text=self.prompt,
            session_key=f"agent:{self.agent_id}:cron:{self.job_id}",
            reply_to=ReplyTo(),  # nothing to reply to: a plain message in the room
        )


@dataclass(frozen=True)
class Due:
    """A run owed now: its scheduled time, and whether it is a missed one caught up."""

    scheduled_ts: int
    catch_up: bool


def due_run(
    schedule: Schedule, cursor: float, now: float, started: float, catch_up: CatchUp
) -> tuple[Due | None, float]:
    """The run owed at ``now`` by a job handled up to ``cursor``, and the new cursor.

    Only the latest time in ``(cursor, now]`` can run (no burst). It is a missed
    one if it was due when the scheduler started (``<= started``): ``catch_up``
    then decides whether it runs.
    """
    latest = schedule.latest_at_or_before(now)
    if latest is None or latest <= cursor:
        return None, cursor
    missed = latest <= started
    if missed and catch_up == "none":
        return None, latest
    return Due(int(latest), missed), latest


class Submitter(Protocol):
    """What the scheduler needs of the turn runner."""

    async def submit(self, spec: TurnSpec) -> bool: ...


RoomResolver = Callable[[CronJob], Awaitable[RoomId]]


@dataclass
class _JobState:
    job: CronJob
    cursor: float  # scheduled times up to here are handled (run, claimed elsewhere, skipped)
    started: float  # times due at or before this were missed while the gateway was down
    room_id: RoomId | None = None
    room_failed: bool = False


class CronScheduler:
    """Runs every hosted agent's cron jobs (a supervised loop: :meth:`run`)."""

    def __init__(
        self,
        store: Store,
        runner: Submitter,
        jobs: Sequence[CronJob],
        resolve_room: RoomResolver,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.runner = runner
        self.resolve_room = resolve_room
        self.clock = clock
        self._jobs: list[CronJob] = list(jobs)
        self._states: dict[tuple[AgentId, str], _JobState] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    @classmethod
    def from_config(
        cls,
        config: SalonConfig,
        store: Store,
        runner: Submitter,
        *,
        agent_apis: Mapping[AgentId, MatrixAPI],
        agent_rooms: Mapping[AgentId, RoomId],
        agent_users: Mapping[AgentId, UserId],
        server_name: str,
        on_visit: VisitUse = no_visit,
    ) -> CronScheduler:
        """The scheduler of the hosted agents' ``cron:`` entries."""
        jobs = jobs_from_config(config, agent_users)
        resolver = MatrixRoomResolver(agent_apis, agent_rooms, server_name, on_visit)
        return cls(store, runner, jobs, resolver)

    @property
    def jobs(self) -> list[CronJob]:
        return list(self._jobs)

    def set_jobs(self, jobs: Iterable[CronJob]) -> None:
        """Replace the jobs (a config reload); the loop picks them up at once."""
        self._jobs = list(jobs)
        self._wake.set()

    def stop(self) -> None:
        """End :meth:`run` (it wakes from its sleep at once)."""
        self._stopping = True
        self._wake.set()

    # --- the loop ------------------------------------------------------------------

    async def run(self, handle: LoopHandle) -> None:
        """Sleep until the next due time, run what is due, repeat (until :meth:`stop`)."""
        self._states.clear()  # a restarted loop starts afresh: what it missed is caught up
        while not self._stopping:
            self._wake.clear()  # set from here on (new jobs, stop): the sleep ends at once
            wake = await self.tick()
            handle.healthy()
            await self._sleep_until(wake)

    async def tick(self, now: float | None = None) -> float | None:
        """Run every job due at ``now``; returns when the next one is due (None: never)."""
        now = self.clock() if now is None else now
        await self._sync_states(now)
        wake: float | None = None
        for state in list(self._states.values()):
            due, state.cursor = due_run(
                state.job.schedule, state.cursor, now, state.started, state.job.catch_up
            )
            if due is not None:
                await self._run_once(state, due)
            upcoming = state.job.schedule.next_after(now)
            if upcoming is not None and (wake is None or upcoming < wake):
                wake = upcoming
        return wake

    async def _sync_states(self, now: float) -> None:
        """Start following new jobs (from their last run), forget removed ones."""
        jobs = {job.key: job for job in self._jobs}
        for key in [k for k in self._states if k not in jobs]:
            del self._states[key]
        for key, job in jobs.items():
            state = self._states.get(key)
            if state is not None:
                if state.job != job:  # changed: same progress, new settings
                    self._states[key] = _JobState(job, state.cursor, state.started)
                continue
            last = await self.store.cron.last(job.agent_id, job.job_id)
            # Never ran: nothing was missed. Else: what came due since its last run was.
            cursor = float(last.scheduled_ts) if last is not None else now
            self._states[key] = _JobState(job, cursor, started=now)

    async def _run_once(self, state: _JobState, due: Due) -> None:
        job = state.job
        room_id = await self._room(state)
        if room_id is None:
            return
        spec = job.spec(due.scheduled_ts, room_id)
        # The claim and the ledger row commit together: whoever wins the claim owns a
        # turn that will run (now, or resumed after a crash); everyone else has none.
        async with self.store.db.transaction():
            won = await self.store.cron.claim(
                job.agent_id, job.job_id, due.scheduled_ts, spec.turn_id, catch_up=due.catch_up
            )
            if won:
                await self.store.turns.admit(
                    spec.turn_id,
                    spec.agent_id,
                    spec.room_id,
                    kind=spec.kind.value,
                    spec=spec.to_json(),
                )
        if not won:
            log.debug("cron.claimed_elsewhere", agent=job.agent_id, job=job.job_id)
            return
        log.info(
            "cron.run",
            agent=job.agent_id,
            job=job.job_id,
            scheduled_ts=due.scheduled_ts,
            catch_up=due.catch_up,
        )
        await self.runner.submit(spec)

    async def _room(self, state: _JobState) -> RoomId | None:
        """The job's room (its agent's own: resolved once; another: at each run, as the
        agent may have left it since, see visits); None (and one warning) if it cannot
        be had."""
        if state.room_id is not None and state.job.target is None:
            return state.room_id
        try:
            state.room_id = await self.resolve_room(state.job)
        except (MatrixError, KeyError) as e:
            if is_transient(e):
                raise  # the supervisor retries; the run is caught up when it is back
            if not state.room_failed:
                log.warning(
                    "cron.room_unavailable",
                    agent=state.job.agent_id,
                    job=state.job.job_id,
                    room=state.job.target,
                    error=str(e),
                )
            state.room_failed = True
            return None
        state.room_failed = False
        return state.room_id

    async def _sleep_until(self, wake: float | None) -> None:
        delay = MAX_SLEEP_S if wake is None else min(max(wake - self.clock(), 0), MAX_SLEEP_S)
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            # A little past the due time, so the clock read after waking has reached it.
            await asyncio.wait_for(self._wake.wait(), delay + 0.005)


def jobs_from_config(config: SalonConfig, agent_users: Mapping[AgentId, UserId]) -> list[CronJob]:
    """The cron jobs of the agents this gateway hosts (those in ``agent_users``)."""
    jobs = []
    for agent_id, agent in config.agents.items():
        user = agent_users.get(AgentId(agent_id))
        if user is None:
            continue
        for entry in agent.cron:
            jobs.append(
                CronJob(
                    agent_id=AgentId(agent_id),
                    job_id=entry.id,
                    schedule=Schedule(entry.schedule, entry.timezone),
                    prompt=entry.prompt,
                    sender=str(user),
                    target=entry.room,
                    catch_up=entry.catch_up,
                )
            )
    return jobs


class MatrixRoomResolver:
    """A job's room id: the agent's room, a room id as is, or an alias resolved (and
    joined, so the agent can post there) with the agent's own Matrix identity."""

    def __init__(
        self,
        agent_apis: Mapping[AgentId, MatrixAPI],
        agent_rooms: Mapping[AgentId, RoomId],
        server_name: str,
        on_visit: VisitUse = no_visit,
    ) -> None:
        self.on_visit = on_visit
        self.agent_apis = agent_apis
        self.agent_rooms = agent_rooms
        self.server_name = server_name

    async def __call__(self, job: CronJob) -> RoomId:
        own = self.agent_rooms.get(job.agent_id)
        if job.target is None:
            if own is None:
                raise KeyError(f"agent {job.agent_id!r} has no room")
            return own
        api = self.agent_apis[job.agent_id]
        target = job.target
        if target.startswith("#"):
            alias = target if ":" in target else f"{target}:{self.server_name}"
            room_id, servers = await api.resolve_alias(RoomAlias(alias))
        else:
            room_id, servers = RoomId(target), []
        if room_id != own:
            # A member already: no change. Another agent's room (left since): its
            # owner lets it in again.
            await self.on_visit(job.agent_id, room_id)
            owner = room_owner(self.agent_rooms, room_id)
            inviter = self.agent_apis.get(owner) if owner is not None else None
            room_id = await join_or_be_invited(api, room_id, inviter, servers)
        return room_id
