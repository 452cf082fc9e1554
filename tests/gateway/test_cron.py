"""Per-agent cron: schedules, the claim that makes a time run once, catching up.

The scheduler runs on a real SQLite store; its clock is a number the test sets,
and :meth:`CronScheduler.tick` is called at the times the loop would wake.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fake_matrix import FakeHomeserver
from tests.gateway.helpers import CODER, CODER_USER, TurnRig, eventually, make_config, open_store
from typer.testing import CliRunner

from salon._exceptions import MatrixConnectionError
from salon.cli.main import app as cli_app
from salon.gateway.cron import (
    CronJob,
    CronScheduler,
    MatrixRoomResolver,
    Schedule,
    due_run,
    jobs_from_config,
)
from salon.ids import AgentId, RoomId
from salon.store import Store
from salon.store.records import TurnState
from salon.supervisor import LoopHandle
from salon.turns.replies import ReplyTo
from salon.turns.spec import TurnKind, TurnSpec

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: a multiple of 2 s
ROOM = RoomId("!coder-room:localhost")
WRITER = AgentId("writer")
EVERY_2S = Schedule("*/2 * * * * *")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    yield store
    await store.close()


class Runner:
    """Records what the scheduler submits (the turn runner's side is tested elsewhere)."""

    def __init__(self) -> None:
        self.specs: list[TurnSpec] = []

    async def submit(self, spec: TurnSpec) -> bool:
        self.specs.append(spec)
        return True

    def times(self, agent: str | None = None) -> list[int]:
        return [int(s.turn_id.rsplit(":", 1)[1]) for s in self.specs if agent in (None, s.agent_id)]


async def own_room(job: CronJob) -> RoomId:
    return ROOM


def job(agent: AgentId = CODER, job_id: str = "tick", **options: object) -> CronJob:
    fields: dict[str, object] = {
        "agent_id": agent,
        "job_id": job_id,
        "schedule": EVERY_2S,
        "prompt": "what time is it?",
        "sender": f"@salon_{agent}:localhost",
        **options,
    }
    return CronJob(**fields)  # type: ignore[arg-type]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scheduler(store: Store, runner: Runner, jobs: list[CronJob], clock: Clock) -> CronScheduler:
    return CronScheduler(store, runner, jobs, own_room, clock=clock)


async def run_until(sched: CronScheduler, clock: Clock, end: float) -> None:
    """Wake the scheduler when the loop would (at each returned time) until ``end``."""
    while True:
        wake = await sched.tick()
        assert wake is not None and wake > clock.now  # never a busy loop
        if wake > end:
            return
        clock.now = wake + 0.005


# --- schedules ------------------------------------------------------------------------


def test_six_fields_are_seconds_first() -> None:
    assert EVERY_2S.next_after(T0) == T0 + 2
    assert EVERY_2S.next_after(T0 + 0.5) == T0 + 2
    assert EVERY_2S.latest_at_or_before(T0) == T0  # a due time counts at its own second
    assert EVERY_2S.latest_at_or_before(T0 + 1.99) == T0
    assert EVERY_2S.latest_at_or_before(T0 - 0.01) == T0 - 2


def test_five_fields_in_a_time_zone() -> None:
    nine_berlin = Schedule("0 9 * * *", "Europe/Berlin")
    now = datetime(2024, 1, 15, 12, 0, tzinfo=UTC).timestamp()
    # 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
    assert nine_berlin.latest_at_or_before(now) == datetime(2024, 1, 15, 8, tzinfo=UTC).timestamp()
    assert nine_berlin.next_after(now) == datetime(2024, 1, 16, 8, tzinfo=UTC).timestamp()
    summer = datetime(2024, 7, 1, 0, 0, tzinfo=UTC).timestamp()
    assert nine_berlin.next_after(summer) == datetime(2024, 7, 1, 7, tzinfo=UTC).timestamp()
    assert Schedule("0 9 * * *").next_after(now) == datetime(2024, 1, 16, 9, tzinfo=UTC).timestamp()


def test_due_run_on_time_missed_and_never_a_burst() -> None:
    # Nothing new since the cursor.
    assert due_run(EVERY_2S, T0, T0 + 1.5, T0 - 100, "latest") == (None, T0)
    # On time: due after the scheduler started.
    due, cursor = due_run(EVERY_2S, T0, T0 + 2.01, T0 + 1, "none")
    assert due is not None and (due.scheduled_ts, due.catch_up, cursor) == (T0 + 2, False, T0 + 2)
    # Missed while down (due before the start): latest runs the most recent one only.
    due, cursor = due_run(EVERY_2S, T0, T0 + 9, T0 + 9, "latest")
    assert due is not None and (due.scheduled_ts, due.catch_up, cursor) == (T0 + 8, True, T0 + 8)
    # ... and none runs none of them, but moves past them.
    assert due_run(EVERY_2S, T0, T0 + 9, T0 + 9, "none") == (None, T0 + 8)
    # Several times due at once while running (a long pause): one run, the latest.
    due, cursor = due_run(EVERY_2S, T0, T0 + 30, T0 + 1, "none")
    assert due is not None and (due.scheduled_ts, due.catch_up) == (T0 + 30, False)


# --- the scheduler --------------------------------------------------------------------


async def test_every_tick_runs_once_as_a_cron_turn(store: Store) -> None:
    runner, clock = Runner(), Clock(T0 + 0.3)
    sched = scheduler(store, runner, [job()], clock)
    await run_until(sched, clock, T0 + 20)

    assert runner.times() == [int(T0) + i for i in range(2, 21, 2)]
    spec = runner.specs[0]
    assert spec == TurnSpec(
        turn_id=f"cron:coder:tick:{int(T0) + 2}",
        agent_id=CODER,
        kind=TurnKind.CRON,
        room_id=ROOM,
        sender="@salon_coder:localhost",
        text="what time is it?",
        session_key="agent:coder:cron:tick",
        reply_to=ReplyTo(),
    )
    # Each run is claimed and ledgered (as an open turn, until the runner runs it).
    runs = await store.cron.runs("coder", "tick")
    assert [r.scheduled_ts for r in runs] == runner.times()
    assert not any(r.catch_up for r in runs)
    turn = await store.turns.get(spec.turn_id, CODER)
    assert turn is not None and turn.kind == "cron" and turn.state is TurnState.ADMITTED
    assert TurnSpec.from_json(turn.spec or "") == spec


async def test_two_schedulers_on_one_store_run_each_time_once(tmp_path: Path) -> None:
    """Two schedulers (two processes: two connections to one file) of the same jobs."""
    stores = [await open_store(tmp_path), await open_store(tmp_path)]
    runners = [Runner(), Runner()]
    clock = Clock(T0 + 0.3)
    jobs = [job(CODER), job(WRITER)]
    scheds = [scheduler(s, r, jobs, clock) for s, r in zip(stores, runners, strict=True)]
    try:
        for _ in range(11):  # the first tick starts following the jobs; then 2, 4 … 20
            wakes = await asyncio.gather(*(s.tick() for s in scheds))
            clock.now = min(w for w in wakes if w is not None) + 0.005
        for agent in ("coder", "writer"):
            both = runners[0].times(agent) + runners[1].times(agent)
            assert sorted(both) == [int(T0) + i for i in range(2, 21, 2)], agent
    finally:
        for s in stores:
            await s.close()


async def test_a_restart_catches_up_the_latest_missed_time_once(store: Store) -> None:
    runner, clock = Runner(), Clock(T0 + 0.3)
    await run_until(scheduler(store, runner, [job()], clock), clock, T0 + 10)
    assert runner.times()[-1] == T0 + 10
    # Killed at T0 + 10.5; back at T0 + 17.2: 12, 14 and 16 were missed.
    restarted, clock.now = Runner(), T0 + 17.2
    sched = scheduler(store, restarted, [job()], clock)
    await run_until(sched, clock, T0 + 22)

    assert restarted.times() == [int(T0) + t for t in (16, 18, 20, 22)]
    runs = {r.scheduled_ts: r.catch_up for r in await store.cron.runs("coder", "tick")}
    assert [t for t, caught in runs.items() if caught] == [int(T0) + 16]
    assert int(T0) + 12 not in runs and int(T0) + 14 not in runs


async def test_catch_up_none_runs_nothing_missed(store: Store) -> None:
    runner, clock = Runner(), Clock(T0 + 0.3)
    await run_until(scheduler(store, runner, [job(catch_up="none")], clock), clock, T0 + 4)
    restarted, clock.now = Runner(), T0 + 11
    await run_until(scheduler(store, restarted, [job(catch_up="none")], clock), clock, T0 + 16)
    assert restarted.times() == [int(T0) + t for t in (12, 14, 16)]


async def test_a_new_job_has_missed_nothing(store: Store) -> None:
    runner, clock = Runner(), Clock(T0 + 7)
    await run_until(scheduler(store, runner, [job()], clock), clock, T0 + 10)
    assert runner.times() == [int(T0) + 8, int(T0) + 10]


async def test_a_run_claimed_before_a_crash_is_not_run_again(store: Store) -> None:
    """Claimed and ledgered, then the process died before the runner launched it: the
    next scheduler does not submit it again; the open ledger row resumes it instead."""

    class Crashing(Runner):
        async def submit(self, spec: TurnSpec) -> bool:
            raise RuntimeError("killed")

    clock = Clock(T0 + 2.1)
    first = scheduler(store, Crashing(), [job()], clock)
    await first.tick()  # a new job: starts following at T0 + 2.1
    clock.now = T0 + 4.01
    with pytest.raises(RuntimeError):
        await first.tick()
    runner = Runner()
    await scheduler(store, runner, [job()], clock).tick()
    assert runner.specs == []
    assert [t.event_id for t in await store.turns.unfinished()] == [
        f"cron:coder:tick:{int(T0) + 4}"
    ]


async def test_an_unreachable_room_skips_the_run_without_claiming(store: Store) -> None:
    hs = FakeHomeserver()
    apis = {CODER: hs.api(str(CODER_USER))}
    resolver = MatrixRoomResolver(apis, {CODER: ROOM}, "localhost")
    runner, clock = Runner(), Clock(T0 + 0.3)
    sched = CronScheduler(store, runner, [job(target="#nowhere")], resolver, clock=clock)
    await run_until(sched, clock, T0 + 4)
    assert runner.specs == [] and await store.cron.runs() == []
    # The homeserver down is not "unreachable room": the loop fails and is restarted.
    hs.down = True
    clock.now = T0 + 6.01
    with pytest.raises(MatrixConnectionError):
        await sched.tick()
    assert await store.cron.runs() == []


async def test_rooms_are_the_agents_own_an_alias_or_an_id(store: Store) -> None:
    hs = FakeHomeserver()
    owner = hs.api("@alice:localhost")
    api = hs.api(str(CODER_USER))
    own = await owner.create_room(alias_localpart="coder", invite=[CODER_USER])
    await api.join(own)
    news = await owner.create_room(alias_localpart="news", preset="public_chat")
    resolver = MatrixRoomResolver({CODER: api}, {CODER: own}, "localhost")
    assert await resolver(job()) == own
    assert await resolver(job(target="#news")) == news  # this homeserver's alias
    assert await resolver(job(target="#news:localhost")) == news
    assert await resolver(job(target=own)) == own
    assert CODER_USER in hs.room(news).joined()  # joined, so it can post there


async def test_a_job_in_another_agents_room_joins_again_at_each_run(store: Store) -> None:
    # A visitor leaves an agent's room once idle there (see visits): the next run of a
    # job posting there must bring it back in, not post as a non-member.
    hs = FakeHomeserver()
    coder, writer = hs.api(str(CODER_USER)), hs.api("@salon_writer:localhost")
    own = await coder.create_room(alias_localpart="salon-coder")
    theirs = await writer.create_room(alias_localpart="salon-writer", invite=[CODER_USER])
    visits: list[tuple[str, RoomId]] = []

    async def on_visit(agent_id: str, room_id: RoomId) -> None:
        visits.append((agent_id, room_id))

    rooms = {CODER: own, WRITER: theirs}
    resolver = MatrixRoomResolver({CODER: coder, WRITER: writer}, rooms, "localhost", on_visit)
    runner, clock = Runner(), Clock(T0 + 0.3)
    sched = CronScheduler(store, runner, [job(target="#salon-writer")], resolver, clock=clock)
    await run_until(sched, clock, T0 + 2.5)
    assert CODER_USER in hs.room(theirs).joined()
    await coder.leave(theirs)  # its visit ended; the owner invites it again
    await writer.invite(theirs, CODER_USER)

    await run_until(sched, clock, T0 + 4.5)
    assert [s.room_id for s in runner.specs] == [theirs, theirs]
    assert CODER_USER in hs.room(theirs).joined()
    assert visits == [(CODER, theirs), (CODER, theirs)]


async def test_jobs_from_config_are_the_hosted_agents() -> None:
    config = make_config(
        agents={
            "coder": {
                "backend": "echo",
                "cron": [
                    {"id": "a", "schedule": "@hourly", "prompt": "p", "room": "#x"},
                    {"id": "b", "schedule": "0 9 * * *", "prompt": "q", "timezone": "Asia/Tokyo"},
                ],
            },
            "writer": {
                "backend": "echo",
                "cron": [{"id": "a", "schedule": "@daily", "prompt": "r"}],
            },
        }
    )
    jobs = jobs_from_config(config, {CODER: CODER_USER})  # the writer is not hosted here
    assert [(j.agent_id, j.job_id, j.target, j.sender) for j in jobs] == [
        (CODER, "a", "#x", CODER_USER),
        (CODER, "b", None, CODER_USER),
    ]
    assert jobs[1].schedule.timezone == "Asia/Tokyo" and jobs[1].catch_up == "latest"


async def test_the_loop_sleeps_until_due_and_wakes_on_stop(store: Store) -> None:
    runner = Runner()
    sched = CronScheduler(store, runner, [job(schedule=Schedule("* * * * * *"))], own_room)
    started = time.time()
    task = asyncio.create_task(sched.run(LoopHandle("cron")))
    await eventually(lambda: len(runner.specs) >= 2, timeout=30, what="two runs")
    sched.set_jobs([job(schedule=Schedule("@yearly"))])  # next due: months away
    await asyncio.sleep(0.1)
    began = time.monotonic()
    sched.stop()
    await asyncio.wait_for(task, 30)
    assert time.monotonic() - began < 10  # woken, not after its sleep (60 s at most)
    ended = time.time()
    # It slept until each time was due: one run per second at most (no busy loop), each
    # a distinct second within the time it ran (counted, so load does not matter).
    times = runner.times()
    assert len(set(times)) == len(times)
    assert all(started - 1 < t <= ended for t in times), (started, times, ended)
    assert len(times) <= ended - started + 1


async def test_a_cron_turn_posts_one_plain_message(store: Store, tmp_path: Path) -> None:
    rig = await TurnRig.start(store, tmp_path)
    cron = job(sender=str(CODER_USER))

    async def rig_room(job: CronJob) -> RoomId:
        return rig.room

    clock = Clock(T0 + 0.3)
    sched = CronScheduler(store, rig.runner, [cron], rig_room, clock=clock)
    await sched.tick()
    clock.now = T0 + 2.01
    await sched.tick()

    spec = cron.spec(int(T0) + 2, rig.room)
    record = await rig.closed(spec)
    assert record.state is TurnState.REPLIED and record.kind == "cron"
    (message,) = rig.agent_events()
    assert message["content"]["body"] == "hello there"
    assert "m.relates_to" not in message["content"]  # not a reply to anything
    assert record.reply_event_id == message["event_id"]
    assert rig.backend.requests[0].text == "what time is it?"
    assert rig.backend.requests[0].sender == str(CODER_USER)


def test_turn_ids_are_stable_per_job_and_time() -> None:
    assert job().turn_id(1234) == "cron:coder:tick:1234"
    assert job().spec(1234, ROOM) == job().spec(1234, ROOM)  # a restart makes the same turn
    assert job(WRITER).turn_id(1234) == "cron:writer:tick:1234"


# --- salon cron list --------------------------------------------------------------------


async def test_salon_cron_list_shows_jobs_last_and_next_runs(store: Store, tmp_path: Path) -> None:
    config = tmp_path / "salon.yaml"
    config.write_text(
        textwrap.dedent(
            """            store: {url: "sqlite:///s.db"}
            agents:
              coder:
                backend: echo
                cron:
                  - {id: tick, schedule: "*/2 * * * * *", prompt: hi}
                  - {id: standup, schedule: "0 9 * * 1-5", prompt: plan,
                     timezone: Europe/Berlin, room: "#team", catch_up: none}
            """
        )
    )
    await store.cron.claim("coder", "tick", 1_700_000_000, "cron:coder:tick:1700000000")
    await store.turns.admit("cron:coder:tick:1700000000", "coder", "!r", kind="cron")
    await store.turns.finish("cron:coder:tick:1700000000", "coder", TurnState.REPLIED)
    await store.cron.claim("coder", "gone", 1_600_000_000, "cron:coder:gone:1600000000")

    result = CliRunner().invoke(cli_app, ["cron", "list", "-c", str(config)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[3]: line for line in result.output.splitlines() if "coder" in line}
    assert "2023-11-14 22:13:20 UTC (replied)" in rows["tick"]
    assert "#salon-coder" in rows["tick"] and "latest" in rows["tick"]
    assert "never" in rows["standup"] and "CE" in rows["standup"] and "#team" in rows["standup"]
    assert "(not configured)" in rows["gone"]
    # The next run is in the job's time zone, at the time its schedule says.
    next_run = rows["standup"].split("│")[-2].strip()
    assert next_run.split()[1] == "09:00:00"

    # No store yet (the gateway never ran): every job, never run.
    result = CliRunner().invoke(
        cli_app, ["cron", "list", "-c", str(config), "--data-dir", str(tmp_path / "none")]
    )
    assert result.exit_code == 0 and result.output.count("never") == 2, result.output
