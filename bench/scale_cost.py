"""Salon's own cost per message, the homeserver out of the picture.

A whole :class:`~salon.app.gateway.Gateway` runs in this process on the in-memory
homeserver of ``tests/fake_matrix.py`` (logins and the sync loops replaced, every
other start step real: SQLite store, routing, turn runner, heartbeats). A message
goes the client-mode way: a person posts it in an agent's room, the event is handed
to the dispatcher (``admit``) and the sync position stored (``advance``) as the
sync loop does, then routed, turned by the ``echo`` backend (ledger in the store)
and sent as a reply. A message's time runs from just before its post to the moment
its reply reaches the fake homeserver.

The baseline, in the same run, is the floor set by this harness: the same post and
hand-over, answered by the smallest possible bot (the sink sends the reply itself).
``salon_only_cpu_ms`` is Salon's CPU per message above that floor.

The gateway logs at ``log_level`` (default ``info``, the gateway's own default) to a
JSON file, as ``salon run`` does (the console, at ``warning``, stays quiet): log lines
are part of the cost users see. ``log_lines_per_message`` says how many it wrote.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import itertools
import pstats
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from common import summary
from tests.fake_matrix import FakeHomeserver, FakeMatrixAPI, FakeRoom

import salon.app.assemble as assemble_module
from salon import log as salon_log
from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.ids import AgentId, EventId, RoomId, UserId
from salon.matrix.events import InboundEvent, parse_event
from salon.matrix.source import EventSink, LoopStatus

SERVER = "localhost"
PERSON = UserId(f"@person:{SERVER}")
REPLY_TIMEOUT_S = 30.0
SLOTS = 256  # wide turn slots: the clients, not the fairness limits, set the concurrency


class LeanFakeMatrixAPI(FakeMatrixAPI):
    """The test fake without its call recording (which would count against Salon)."""


for _name, _value in list(vars(FakeMatrixAPI).items()):
    _inner = getattr(_value, "__wrapped__", None)
    if _inner is not None:
        setattr(LeanFakeMatrixAPI, _name, _inner)


class WatchedHomeserver(FakeHomeserver):
    """The fake homeserver, telling who waits on a reply when it arrives."""

    def __init__(self) -> None:
        super().__init__(SERVER)
        self.waiters: dict[str, asyncio.Future[float]] = {}

    def api(self, user_id: str, device_id: str = "FAKEDEVICE") -> FakeMatrixAPI:
        return LeanFakeMatrixAPI(user_id, self, device_id=device_id)

    def append(
        self,
        room: FakeRoom,
        sender: str,
        etype: str,
        content: dict[str, Any],
        state_key: str | None = None,
    ) -> EventId:
        event_id = super().append(room, sender, etype, content, state_key)
        # Keep memory flat over long runs: only state and the newest events matter.
        if len(room.timeline) > 64:
            del room.timeline[:32]
        target = ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get("event_id")
        if target and "m.new_content" not in content:
            fut = self.waiters.get(str(target))
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())
        return event_id


class HandOver:
    """Stands in for the sync loops: hands events to the sink, then stores the position
    (as ``ClientSyncSource`` does after each batch)."""

    instance: HandOver | None = None

    def __init__(self, apis: Sequence[Any], store: Any, *args: Any, **kwargs: Any) -> None:
        self.store = store
        self.sink: EventSink | None = None
        self.batches = itertools.count(1)
        HandOver.instance = self

    async def start(self, sink: EventSink) -> None:
        self.sink = sink

    async def wait_ready(self, timeout: float) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> list[LoopStatus]:
        return []

    async def deliver(self, identity: UserId, event: InboundEvent) -> None:
        assert self.sink is not None
        await self.sink.admit(identity, [event])
        marks = {event.room_id: (event.event_id, event.origin_ts)}
        await self.store.advance(identity, f"s{next(self.batches)}", marks, {})


def cost_config(data_dir: Path, agents: int) -> SalonConfig:
    """``agents`` echo agents (no delay) on the fake server, a fresh SQLite store."""
    return SalonConfig.model_validate(
        {
            "homeserver": {
                "url": "http://127.0.0.1:9",  # never asked: logins and sync are replaced
                "server_name": SERVER,
                "registration_shared_secret": "unused",
            },
            "agents": {
                f"echo{i}": {"label": f"Echo {i}", "backend": {"type": "echo"}}
                for i in range(agents)
            },
            "access": {"allowed_users": [f"@*:{SERVER}"]},
            "sync": {"startup_jitter_s": 0},
            "turns": {
                "concurrency": SLOTS,
                "per_agent": SLOTS,
                "per_sender": SLOTS,
                "max_waiting_per_sender": 4096,
                "max_waiting_per_agent": 4096,
            },
            "store": {"url": f"sqlite:///{data_dir / 'salon-cost.db'}"},
            "data_dir": str(data_dir / "data"),
        }
    )


Deliver = Callable[[UserId, InboundEvent], Awaitable[None]]


class Driver:
    """People posting in agent rooms and waiting for replies, ``clients`` at a time."""

    def __init__(
        self, hs: WatchedHomeserver, rooms: list[tuple[RoomId, UserId]], deliver: Deliver
    ) -> None:
        self.hs, self.rooms, self.deliver = hs, rooms, deliver
        self.person = hs.api(PERSON)
        self.txns = itertools.count(1)

    async def one(self, room_id: RoomId, agent: UserId, text: str) -> float:
        start = time.perf_counter()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        content = {"msgtype": "m.text", "body": text}
        event_id = await self.person.send_event(
            room_id, "m.room.message", content, txn_id=f"t{next(self.txns)}"
        )
        self.hs.waiters[event_id] = fut
        raw = self.hs.room(room_id).timeline[-1][1]
        assert raw["event_id"] == event_id
        parsed = parse_event(raw, room_id, agent)
        assert parsed is not None
        await self.deliver(agent, parsed)
        try:
            seen = await asyncio.wait_for(fut, REPLY_TIMEOUT_S)
        finally:
            del self.hs.waiters[event_id]
        return (seen - start) * 1000

    async def run(self, total: int, clients: int) -> dict[str, Any]:
        samples: list[float] = []
        numbers = iter(range(total))

        async def client(c: int) -> None:
            for i in numbers:
                room_id, agent = self.rooms[i % len(self.rooms)]
                samples.append(await self.one(room_id, agent, f"bench {c}.{i}"))

        cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        loop_cpu = time.thread_time() - loop0
        return {
            **summary(samples),
            "messages": total,
            "messages_per_s": round(total / wall, 1),
            "cpu_ms_per_message": round(cpu * 1000 / total, 3),
            # The event loop's thread; the rest is the SQLite thread (and the GC).
            "loop_cpu_ms_per_message": round(loop_cpu * 1000 / total, 3),
            "messages_per_cpu_s": round(total / cpu, 1),
        }


async def baseline_rooms(
    hs: WatchedHomeserver, agents: int
) -> tuple[list[tuple[RoomId, UserId]], Deliver]:
    """Rooms of bare echo bots, and the hand-over that answers there at once."""
    person = hs.api(PERSON)
    bots: dict[UserId, FakeMatrixAPI] = {}
    rooms = []
    for i in range(agents):
        user = UserId(f"@bot{i}:{SERVER}")
        bots[user] = hs.api(user)
        room_id = await person.create_room(invite=[user])
        await bots[user].join(room_id)
        rooms.append((room_id, user))
    txns = itertools.count(1)

    async def answer(identity: UserId, event: InboundEvent) -> None:
        content = {
            "msgtype": "m.text",
            "body": event.body,
            "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
        }
        await bots[identity].send_event(
            RoomId(event.room_id), "m.room.message", content, txn_id=f"b{next(txns)}"
        )

    return rooms, answer


def top_costs(profile: cProfile.Profile, limit: int) -> list[dict[str, Any]]:
    """The functions with the most own time, as {function, tottime_ms, share}."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]
    return [
        {
            "function": f"{_short(file)}:{line}:{name}",
            "calls": v[1],
            "tottime_ms": round(v[2] * 1000, 1),
            "share": round(v[2] / total, 3),
        }
        for (file, line, name), v in rows
    ]


def by_area(profile: cProfile.Profile) -> dict[str, float]:
    """Own time grouped by package area (salon.<pkg>, sqlite, json, asyncio, ...)."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    areas: dict[str, float] = {}
    for (file, _line, name), v in raw.items():
        areas[_area(file, name)] = areas.get(_area(file, name), 0.0) + v[2]
    ordered = sorted(areas.items(), key=lambda kv: kv[1], reverse=True)
    return {k: round(t / total, 3) for k, t in ordered[:16]}


def _short(file: str) -> str:
    for marker in ("/src/", "/site-packages/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _area(file: str, name: str) -> str:
    if "/src/salon/" in file:
        parts = file.split("/src/salon/", 1)[1].split("/")
        return "salon." + (parts[0] if len(parts) > 1 else parts[0].removesuffix(".py"))
    if "fake_matrix" in file or "/bench/" in file:
        return "harness (fake homeserver, driver)"
    if "sqlite" in name or "sqlite" in file:
        return "sqlite3"
    if "/site-packages/" in file:
        return file.split("/site-packages/", 1)[1].split("/")[0]
    if "asyncio" in file or "selectors" in file:
        return "asyncio"
    if "json" in file or "json" in name:
        return "json"
    return "python stdlib/builtins"


async def run_cost(
    *,
    messages: int,
    warmup: int,
    clients: int,
    agents: int,
    profile: bool,
    top: int,
    profile_out: Path | None = None,
    log_level: str = "info",
) -> dict[str, Any]:
    """Baseline and Salon, alternating; then (``profile``) one more Salon pass under cProfile."""
    hs = WatchedHomeserver()
    originals = (assemble_module.login_all, assemble_module.event_source)

    async def login_all(auth: Any, specs: Any, **kwargs: Any) -> Any:
        return {UserId(s.user_id): hs.api(s.user_id) for s in specs}

    assemble_module.login_all = login_all  # type: ignore[assignment]

    def event_source(config: Any, apis: Any, store: Any, *args: Any) -> Any:
        return HandOver(list(apis.values()), store.identities)

    assemble_module.event_source = event_source  # type: ignore[assignment]
    tmp = tempfile.TemporaryDirectory(prefix="salon-cost-", ignore_cleanup_errors=True)
    log_file = Path(tmp.name) / "salon.log"
    salon_log.configure(log_level, file=log_file, console_level="warning")
    sent = 0  # messages the gateway handled (its log lines are counted against them)
    gateway = Gateway(cost_config(Path(tmp.name), agents), invite=[PERSON], name="bench")
    try:
        started = time.perf_counter()
        state = await gateway.start()
        start_s = time.perf_counter() - started
        source = HandOver.instance
        assert source is not None
        person = hs.api(PERSON)
        rooms = []
        for agent_id, room_id in state.topology.agent_rooms.items():
            await person.join(room_id)
            rooms.append((room_id, state.agent_users[AgentId(agent_id)]))
        salon = Driver(hs, rooms, source.deliver)
        lines_before = _lines(log_file)  # the start's own lines are not a message's
        base = Driver(hs, *await baseline_rooms(hs, agents))
        for driver in (base, salon):
            await driver.run(warmup, clients)
        sent += warmup
        results: dict[str, list[dict[str, Any]]] = {"salon": [], "baseline": []}
        for n in range(4):  # alternating rounds, so drift hits both
            order = [("baseline", base), ("salon", salon)]
            for name, driver in order if n % 2 == 0 else reversed(order):
                results[name].append(await driver.run(messages // 4, clients))
        sent += messages // 4 * 4
        out: dict[str, Any] = {
            "agents": agents,
            "clients": clients,
            "gateway_start_s": round(start_s, 2),
            "log_level": log_level,
            "salon": _merge(results["salon"]),
            "baseline_harness": _merge(results["baseline"]),
        }
        out["salon_only_cpu_ms"] = round(
            out["salon"]["cpu_ms_per_message"] - out["baseline_harness"]["cpu_ms_per_message"], 3
        )
        out["salon_only_messages_per_cpu_s"] = round(1000 / max(out["salon_only_cpu_ms"], 1e-6), 1)
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            await salon.run(max(messages // 4, 200), clients)
            prof.disable()
            sent += max(messages // 4, 200)
            if profile_out is not None:
                prof.dump_stats(profile_out)
            out["profile"] = {"by_area": by_area(prof), "top_own_time": top_costs(prof, top)}
        out["log_lines_per_message"] = round((_lines(log_file) - lines_before) / max(sent, 1), 2)
        return out
    finally:
        await gateway.stop()
        salon_log.configure("warning")
        assemble_module.login_all, assemble_module.event_source = originals  # type: ignore[misc]
        tmp.cleanup()


def _lines(path: Path) -> int:
    """Lines in the log file and its rolled-over copies."""
    files = [path, *path.parent.glob(f"{path.name}.*")]
    return sum(sum(1 for _ in f.open("rb")) for f in files if f.exists())


def _merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one side as one: medians of the per-round figures."""
    keys = (
        "p50_ms",
        "p95_ms",
        "mean_ms",
        "messages_per_s",
        "cpu_ms_per_message",
        "loop_cpu_ms_per_message",
        "messages_per_cpu_s",
    )
    merged: dict[str, Any] = {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys}
    merged["max_ms"] = max(r["max_ms"] for r in rounds)
    merged["messages"] = sum(r["messages"] for r in rounds)
    return merged


__all__ = ["run_cost"]
