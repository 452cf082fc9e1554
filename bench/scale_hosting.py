"""Hosting N agents against a throwaway Synapse: provisioning, memory, restart, reach.

For each agent count, in one run (``bench/scale.py --part hosting``):

1. **Baseline**: raw mautrix (no Salon) does the work Salon's cold start does on the
   homeserver. Client mode: a ``ClientAPI`` per user, registered with the shared
   secret as Salon does; appservice mode: one appservice's ``IntentAPI`` per user
   (``bench/scale_appservice.py``). Register the router and N users, set their
   display names; the router creates the Space (inviting the operator) and the lobby
   (inviting the agents); each user creates its own room with an alias, invites the
   operator and joins the lobby; the router lists each room in the Space, each user
   names the Space its room's parent; client mode: every identity syncs once. Same
   concurrency as Salon (all users at once). Agents are not invited into each
   other's rooms: Salon invites a visitor when it comes.
2. **Salon cold**: a fresh gateway with N ``echo`` agents, ``Gateway.start()`` until it
   returns (every identity ready, rooms and Space entries made; client mode: each
   synced once). RSS of this process once all are online (and its growth over the start).
3. **Salon warm**: the gateway stopped and started again on the same store; the
   time from the start until every agent has answered one message in its room.
4. Round trips to agent #1 and to agent #N, alternating, ``roundtrips`` each.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import secrets
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from common import BenchError, Operator, console, register, salon_config, summary
from mautrix.api import HTTPAPI, Method
from mautrix.api import Path as MxPath
from mautrix.client import ClientAPI
from mautrix.types import RoomAlias, RoomID, UserID
from scale_appservice import Registrations, appservice_config, raw_baseline

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig, TurnsConfig
from salon.devserver.synapse import SynapseLayout
from salon.ids import AgentId, UserId
from salon.matrix.registration import register_with_shared_secret

REQUEST_TIMEOUT_S = 300.0
ANSWER_TIMEOUT_S = 300.0
"""How long a message to every agent at once may wait for its last reply."""


def rss_mb() -> float:
    """This process's resident set size in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def trimmed_rss_mb() -> float:
    """RSS once glibc has handed free heap back to the system (freed memory the
    allocator kept: what a peak leaves behind); RSS as is without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mb()


def print_top(snapshot: tracemalloc.Snapshot, top: int) -> None:
    """The ``top`` allocation sites still holding memory, by line and by file."""
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    total = sum(s.size for s in snapshot.statistics("filename"))
    peak = tracemalloc.get_traced_memory()[1]
    console.print(
        f"tracemalloc: {total / 1e6:.1f} MB held by Python allocations"
        f" (peak {peak / 1e6:.1f} MB); the rest of RSS is native memory or free space"
    )
    for kind in ("lineno", "filename"):
        console.print(f"tracemalloc top {top} by {kind}:")
        for stat in snapshot.statistics(kind)[:top]:
            frame = stat.traceback[0]
            console.print(
                f"  {stat.size / 1e6:8.2f} MB {stat.count:8d} blocks"
                f"  {frame.filename}:{frame.lineno if kind == 'lineno' else ''}"
            )


def hosting_config(layout: SynapseLayout, data_dir: Path, agents: int) -> SalonConfig:
    """``agents`` echo agents (``echo``, ``idle0`` … as in roundtrip.py's config)."""
    config = salon_config(layout, data_dir, extra_agents=agents - 1)
    # At 100 agents on 2 shared cores Synapse, busy with ~10,000 invitations, took more
    # than the default 30 s to answer one join, and the cold start failed on it.
    hs = config.homeserver
    assert hs is not None
    # One operator asks every agent at once: wide slots, or the per-sender bounds answer
    # "busy" (as they should for one person sending a hundred messages at once).
    wide = TurnsConfig(
        concurrency=4096,
        per_agent=64,
        per_sender=4096,
        max_waiting_per_sender=4096,
        max_waiting_per_agent=4096,
    )
    return config.model_copy(
        update={
            "homeserver": hs.model_copy(update={"request_timeout_s": REQUEST_TIMEOUT_S}),
            "turns": wide,
        }
    )


@dataclass(frozen=True)
class HostingPlan:
    """What one hosting run measures: ``roundtrips`` per agent; ``baseline``: raw mautrix
    provisioning and the homeserver floor too; ``stop_after``: ``cold``, ``first``
    (answer-all once), ``warm`` (restart until all answer) or ``all``; ``tracemalloc``:
    trace Python allocations over the cold start and print the top this many sites
    (0: off; native memory, e.g. vodozemac's, is not seen)."""

    roundtrips: int = 20
    baseline: bool = True
    stop_after: str = "all"
    tracemalloc: int = 0


Senders = list[tuple[str, HTTPAPI]]
"""Each baseline room and how its user sends there (for the homeserver's floor)."""


async def baseline(
    layout: SynapseLayout, http: aiohttp.ClientSession, n: int, operator: str
) -> tuple[float, Senders]:
    """The same homeserver work with a raw mautrix client; seconds taken."""
    ns = secrets.token_hex(3)
    started = time.perf_counter()

    async def client(localpart: str) -> ClientAPI:
        creds = await register_with_shared_secret(
            http,
            layout.base_url,
            layout.registration_shared_secret,
            localpart,
            secrets.token_urlsafe(16),
        )
        api = ClientAPI(
            UserID(creds.user_id),
            api=HTTPAPI(layout.base_url, creds.access_token, client_session=http),
        )
        await api.set_displayname(localpart)
        return api

    router, *users = await asyncio.gather(
        client(f"raw-{ns}"), *(client(f"raw-{ns}_a{i}") for i in range(n))
    )
    space = await router.create_room(
        alias_localpart=f"raw-{ns}",
        name="Space",
        invitees=[UserID(operator)],
        creation_content={"type": "m.space"},
    )
    lobby = await router.create_room(
        alias_localpart=f"raw-{ns}-lobby",
        name="Lobby",
        invitees=[UserID(operator), *(u.mxid for u in users)],
    )
    server = layout.server_name

    async def agent_room(api: ClientAPI, i: int) -> RoomID:
        room = await api.create_room(
            alias_localpart=f"raw-{ns}-a{i}",
            name=f"Agent {i}",
            topic="an agent's room",
        )
        await api.join_room(RoomAlias(f"#raw-{ns}-lobby:{server}"), servers=[server])
        await api.invite_user(room, UserID(operator))
        return room

    rooms = await asyncio.gather(*(agent_room(api, i) for i, api in enumerate(users)))
    await router.send_state_event(space, "m.space.child", {"via": [server]}, state_key=lobby)
    for api, room in zip(users, rooms, strict=True):
        await router.send_state_event(space, "m.space.child", {"via": [server]}, state_key=room)
        await api.send_state_event(room, "m.space.parent", {"via": [server]}, state_key=space)
    await asyncio.gather(*(api.sync(timeout=0) for api in [router, *users]))
    return time.perf_counter() - started, [
        (str(room), api.api) for api, room in zip(users, rooms, strict=True)
    ]


async def homeserver_floor(operator: Operator, senders: Senders) -> float:
    """What answering every agent at once costs the homeserver alone: the operator
    sends one message into each baseline room while each room's user sends one there
    too, all at once; seconds until every send is answered. (Salon's figure adds the
    gateway and the operator's /sync seeing each reply.)"""
    await asyncio.gather(*(operator.join(room) for room, _ in senders))
    started = time.perf_counter()

    async def reply(room: str, api: HTTPAPI) -> None:
        path = MxPath.v3.rooms[RoomID(room)].send["m.room.message"][secrets.token_hex(8)]
        await api.request(Method.PUT, path, {"msgtype": "m.text", "body": "floor"})

    await asyncio.gather(
        *(operator.send(room, "floor") for room, _ in senders),
        *(reply(room, api) for room, api in senders),
    )
    return time.perf_counter() - started


async def answers_all(operator: Operator, rooms: list[str]) -> float:
    """One message to every agent room at once; seconds until the last reply. A reply
    that never came fails the run, saying how many of all were missing (not just the
    first to time out)."""
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            operator.roundtrip(
                room, f"hello {i} {secrets.token_hex(3)}", f"agent {i}", ANSWER_TIMEOUT_S
            )
            for i, room in enumerate(rooms)
        ),
        return_exceptions=True,
    )
    failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    if failed:
        first = failed[0][1]
        raise BenchError(
            f"{len(failed)} of {len(rooms)} agents did not answer (agents"
            f" {', '.join(str(i) for i, _ in failed[:10])}{' …' if len(failed) > 10 else ''});"
            f" first: {first}"
        )
    return time.perf_counter() - started


async def one_count(
    layout: SynapseLayout, data_dir: Path, n: int, reg: Registrations | None, plan: HostingPlan
) -> dict[str, Any]:
    """One agent count; ``reg``: appservice mode, with these registrations."""
    out: dict[str, Any] = {"agents": n}
    # Provisioning 100 agents queues thousands of invites in Synapse: a request may wait
    # longer than aiohttp's default 5 minutes.
    slow = aiohttp.ClientTimeout(total=1800)
    async with (
        aiohttp.ClientSession(timeout=slow) as op_http,
        aiohttp.ClientSession(timeout=slow) as http,
    ):
        operator = Operator(op_http, layout.base_url, await register(op_http, layout, "operator"))
        person = operator.creds.user_id
        senders: Senders = []
        if plan.baseline:
            console.print(f"{n} agents: baseline (raw mautrix) provisioning …")
            raw = (
                baseline(layout, http, n, person)
                if reg is None
                else raw_baseline(layout, http, n, person, reg)
            )
            took, senders = await raw
            out["baseline_provision_s"] = round(took, 2)
            console.print(f"{n} agents: raw mautrix took {out['baseline_provision_s']} s")
        config = hosting_config(layout, data_dir, n)
        if reg is not None:
            config = appservice_config(config, reg)
        secrets_ = reg.secrets if reg is not None else None

        def new_gateway() -> Gateway:
            return Gateway(config, invite=[UserId(person)], ready_timeout_s=600, secrets=secrets_)

        rss_before = rss_mb()
        console.print(f"{n} agents: Salon cold start …")
        if plan.tracemalloc:
            tracemalloc.start(8)
        gateway = new_gateway()
        started = time.perf_counter()
        state = await gateway.start()
        out["salon_cold_start_s"] = round(time.perf_counter() - started, 2)
        out["rss_online_mb"] = rss_mb()
        if plan.tracemalloc:
            print_top(tracemalloc.take_snapshot(), plan.tracemalloc)
            tracemalloc.stop()
            console.print(
                f"RSS {rss_mb()} MB, {trimmed_rss_mb()} MB once malloc_trim(0) hands back free heap"
            )
        out["rss_growth_mb"] = round(out["rss_online_mb"] - rss_before, 1)
        console.print(
            f"{n} agents: Salon cold start took {out['salon_cold_start_s']} s,"
            f" RSS {out['rss_online_mb']} MB (+{out['rss_growth_mb']} MB)"
        )
        if plan.baseline:
            out["provision_ratio"] = round(
                out["salon_cold_start_s"] / out["baseline_provision_s"], 2
            )
        if plan.stop_after == "cold":
            await gateway.stop()
            return out
        ids = list(state.topology.agent_rooms)
        rooms = [str(state.topology.agent_rooms[AgentId(a)]) for a in ids]
        await asyncio.gather(*(operator.join(r) for r in rooms))
        await operator.start_sync(rooms)
        try:
            out["first_answers_all_s"] = round(await answers_all(operator, rooms), 2)
            if senders:
                out["floor_answers_all_s"] = round(await homeserver_floor(operator, senders), 2)
            if plan.stop_after == "first":
                return out
            console.print(f"{n} agents: Salon warm restart …")
            await gateway.stop()
            gateway = new_gateway()
            started = time.perf_counter()
            await gateway.start()
            out["warm_start_s"] = round(time.perf_counter() - started, 2)
            await answers_all(operator, rooms)
            out["warm_until_all_answer_s"] = round(time.perf_counter() - started, 2)
            if plan.stop_after == "warm":
                return out
            first, last = rooms[0], rooms[-1]
            samples: dict[str, list[float]] = {"agent_1": [], f"agent_{n}": []}
            for i in range(plan.roundtrips):
                pair = [("agent_1", first), (f"agent_{n}", last)]
                for name, room in pair if i % 2 == 0 else reversed(pair):
                    try:
                        samples[name].append(await operator.roundtrip(room, f"rt {i}", name))
                    except BenchError as e:  # counted, the other figures kept
                        out.setdefault("roundtrip_errors", []).append(str(e))
            out["roundtrip"] = {k: summary(v) for k, v in samples.items() if v}
            if len(out["roundtrip"]) == 2:
                last_p50 = out["roundtrip"][f"agent_{n}"]["p50_ms"]
                out["roundtrip_ratio_p50"] = round(
                    last_p50 / out["roundtrip"]["agent_1"]["p50_ms"], 3
                )
        finally:
            await operator.stop()
            await gateway.stop()
    console.print(f"{n} agents: {out}")
    return out


async def run_hosting(
    layout: SynapseLayout,
    data_dir: Path,
    counts: list[int],
    reg: Registrations | None,
    plan: HostingPlan,
) -> dict[str, Any]:
    """Each agent count in turn, on the same Synapse (fresh users and rooms each time);
    ``reg``: in appservice mode, with these registrations (Synapse loaded them)."""
    mode = "client" if reg is None else "appservice"
    results = []
    for n in counts:
        started = time.perf_counter()
        result = await one_count(layout, data_dir, n, reg, plan)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        results.append(result)
    return {"mode": mode, "runs": results}
