"""Two gateways on one PostgreSQL, one killed with -9 halfway (``--part gateways``).

Against a throwaway Synapse (``common.run_bench``) and a throwaway PostgreSQL
(``tests/pg_server.py``): two ``salon run`` processes in client mode with the same
config (``agents`` echo agents, ``cluster.lease_s``) on one store. The operator sends
``messages`` messages spread over the agents' rooms; once half have been answered the
first gateway is killed with -9. Reported: the replies each message got (exactly one
each is the goal), the work the killed gateway had claimed at the kill (open turns,
inbox rows), and the time from the kill until the other gateway claimed it, until it
finished it all, and until every message was answered.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import yaml
from common import Operator, console, register, salon_config

from salon.devserver.synapse import SynapseLayout

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0
ANSWER_TIMEOUT_S = 180.0


PICKLE_KEY = secrets.token_hex(32)


class GatewayProcess:
    """``salon run`` in a child process; ``ready`` once it logs ``gateway.ready``."""

    def __init__(self, config: Path, log: Path) -> None:
        # Both gateways open the same stored encryption keys: one pickle key.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SALON_BENCH_PICKLE_KEY": PICKLE_KEY}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "salon.cli", "run", "-c", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.ready = threading.Event()
        self.log = log
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("w") as out:
            for line in self.proc.stdout:
                out.write(line)
                if "gateway.ready" in line:
                    self.ready.set()

    async def wait_ready(self) -> None:
        if not await asyncio.to_thread(self.ready.wait, READY_TIMEOUT_S):
            raise RuntimeError(f"gateway not ready (log: {self.log})")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _configs(
    layout: SynapseLayout, data_dir: Path, agents: int, pg_url: str, lease_s: float, admin: str
) -> tuple[list[Path], dict[str, Any]]:
    config = salon_config(layout, data_dir, extra_agents=agents - 1)
    data = config.model_dump(mode="json", exclude_none=True)
    data["store"] = {"url": pg_url}
    data["cluster"] = {"lease_s": lease_s}
    data["encryption"] = {"pickle_key_env": "SALON_BENCH_PICKLE_KEY"}
    data["access"] = {**data["access"], "admins": [admin]}  # invited to the agent rooms
    # One operator asks every agent at once: wide slots (see scale_hosting).
    data["turns"] = {
        "concurrency": 4096,
        "per_agent": 64,
        "per_sender": 4096,
        "max_waiting_per_sender": 4096,
        "max_waiting_per_agent": 4096,
    }
    # Each reply takes a while, so there is claimed work in flight when one is killed.
    for agent in data["agents"].values():
        agent["backend"] = {"type": "echo", "delay_s": 1.0}
    paths = []
    for name in ("first", "second"):
        path = data_dir / f"gateway-{name}.yaml"
        path.write_text(yaml.safe_dump({**data, "data_dir": str(data_dir / name)}))
        paths.append(path)
    return paths, data


async def _rows(pg_url: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(pg_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _replies(operator: Operator, room_id: str, asked: set[str]) -> Counter[str]:
    """How many replies each of ``asked`` got in ``room_id`` (edits not counted)."""
    got: Counter[str] = Counter()
    path = f"/rooms/{quote(room_id, safe='')}/messages"
    data = await operator.request("GET", path, query={"dir": "b", "limit": "500"})
    for event in data.get("chunk") or []:
        content = event.get("content") or {}
        rel = content.get("m.relates_to") or {}
        target = (rel.get("m.in_reply_to") or {}).get("event_id")
        if rel.get("rel_type") != "m.replace" and target in asked:
            got[target] += 1
    return got


async def run_gateways(
    layout: SynapseLayout,
    data_dir: Path,
    pg_url: str,
    *,
    agents: int,
    messages: int,
    lease_s: float,
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        operator = Operator(http, layout.base_url, await register(http, layout, "operator"))
        paths, data = _configs(layout, data_dir, agents, pg_url, lease_s, operator.creds.user_id)
        first = GatewayProcess(paths[0], data_dir / "first.log")
        second: GatewayProcess | None = None
        try:
            await first.wait_ready()  # provisions users and rooms alone
            second = GatewayProcess(paths[1], data_dir / "second.log")
            await second.wait_ready()
            console.print("both gateways ready")
            alias = data["naming"]["agent_room_alias"]
            rooms = []
            for agent in data["agents"]:
                local = alias.replace("{id}", agent)
                answer = await operator.request(
                    "POST", f"/join/{quote(f'#{local}:{layout.server_name}', safe='')}", {}
                )
                rooms.append(str(answer["room_id"]))
            await operator.start_sync(rooms)
            asked: dict[str, str] = {}  # event id -> room
            waits: list[asyncio.Future[tuple[float, str]]] = []
            half = asyncio.Event()

            def answered(_: object) -> None:
                if sum(w.done() for w in waits) >= messages // 2:
                    half.set()

            async def ask(room: str, texts: list[str]) -> None:
                for text in texts:  # one room's messages in order, rooms side by side
                    event_id = await operator.send(room, text)
                    asked[event_id] = room
                    waits.append(operator._waiter(event_id))
                    waits[-1].add_done_callback(answered)

            texts = [f"m{n}" for n in range(messages)]
            sending = asyncio.gather(
                *(ask(room, texts[i :: len(rooms)]) for i, room in enumerate(rooms))
            )
            # Killed once half are answered (the rest may still be being sent).
            await asyncio.wait(
                [sending, asyncio.ensure_future(half.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            if sending.done():
                await sending  # its error, if any
                await half.wait()
            pid = first.proc.pid
            found = await _rows(pg_url, "SELECT DISTINCT owner FROM turns")
            owner = next((str(r["owner"]) for r in found if f"-{pid}-" in (r["owner"] or "")), None)
            if owner is None:
                raise RuntimeError("the first gateway took no work")
            first.stop(signal.SIGKILL)
            killed = time.perf_counter()
            answered_at_kill = sum(w.done() for w in waits)
            held_turns = await _rows(
                pg_url,
                "SELECT event_id, agent_id FROM turns"
                " WHERE state IN ('admitted', 'running') AND owner = $1",
                owner,
            )
            held_inbox = await _rows(
                pg_url, "SELECT event_id FROM inbox WHERE state = 'new' AND owner = $1", owner
            )
            console.print(
                f"killed the first gateway: {len(held_turns)} open turns and"
                f" {len(held_inbox)} inbox rows were its"
            )
            claimed_s = finished_s = None
            turn_keys = [(r["event_id"], r["agent_id"]) for r in held_turns]
            inbox_ids = [r["event_id"] for r in held_inbox]
            deadline = killed + ANSWER_TIMEOUT_S
            while time.perf_counter() < deadline and finished_s is None:
                turns = await _rows(
                    pg_url,
                    "SELECT state, owner FROM turns WHERE (event_id, agent_id) IN"
                    " (SELECT * FROM unnest($1::text[], $2::text[]))",
                    [k[0] for k in turn_keys],
                    [k[1] for k in turn_keys],
                )
                inbox = await _rows(
                    pg_url,
                    "SELECT state, owner FROM inbox WHERE event_id = ANY($1::text[])",
                    inbox_ids,
                )
                rows = [*turns, *inbox]
                if claimed_s is None and any(r["owner"] != owner for r in rows):
                    claimed_s = time.perf_counter() - killed
                if all(r["state"] not in ("new", "admitted", "running") for r in rows):
                    finished_s = time.perf_counter() - killed
                    claimed_s = claimed_s if claimed_s is not None else finished_s
                    break
                await asyncio.sleep(0.05)
            await sending  # went on meanwhile
            console.print(f"{messages} messages sent")
            await asyncio.wait_for(asyncio.gather(*waits), max(1.0, deadline - time.perf_counter()))
            all_answered_s = time.perf_counter() - killed
            await asyncio.sleep(3)  # room for a duplicate to show up, if there were one
            counts: Counter[str] = Counter()
            for room in rooms:
                counts.update(
                    await _replies(operator, room, {e for e, r in asked.items() if r == room})
                )
            replies = Counter(counts.get(e, 0) for e in asked)
            await operator.stop()
            attempts = Counter(
                int(r["attempts"]) for r in await _rows(pg_url, "SELECT attempts FROM turns")
            )
            return {
                "agents": agents,
                "messages": messages,
                "lease_s": lease_s,
                "answered_exactly_once": replies.get(1, 0),
                "replies_per_message": {str(k): v for k, v in sorted(replies.items())},
                "turn_attempts": {str(k): v for k, v in sorted(attempts.items())},
                "answered_at_kill": answered_at_kill,
                "killed_gateway_held": {"turns": len(held_turns), "inbox_rows": len(held_inbox)},
                "kill_to_claimed_s": None if claimed_s is None else round(claimed_s, 2),
                "kill_to_claimed_work_finished_s": (
                    None if finished_s is None else round(finished_s, 2)
                ),
                "kill_to_all_answered_s": round(all_answered_s, 2),
            }
        finally:
            first.stop(signal.SIGKILL)
            if second is not None:
                second.stop()
