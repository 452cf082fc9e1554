"""Chat completions through Salon's OpenAI-compatible endpoint versus the same ``echo``
agent driven through Matrix, at 1, 8 and 32 concurrent clients.

Starts a throwaway Synapse and a Salon gateway (in this process) with one ``echo``
agent and the HTTP API on a free loopback port. For each concurrency level, and
for each side in alternating order, that many clients each send requests one
after the other until the level's count is done:

- ``api``: ``POST /v1/chat/completions`` (``model: echo``, not streamed) with the
  bearer token; a round trip ends when the ``chat.completion`` is read.
- ``matrix``: the operator user posts a message in the echo agent's room; a round
  trip ends when its own ``/sync`` long-poll returns the reply
  (``bench/roundtrip.py``'s operator, one sync loop shared by the clients).

Prints one JSON object on stdout (p50/p95/mean/max in ms and requests/s per side
and level); progress goes to stderr.

Usage::

    .venv/bin/python bench/api.py [--requests 200] [--warmup 5] [--levels 1,8,32] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

# `common.py` is a sibling module (bench/ is not a package): import it by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchError, Operator, console, register, run_bench, summary
from common import salon_config as roundtrip_config

from salon.app.gateway import Gateway
from salon.config.models import ApiConfig, SalonConfig, TurnsConfig
from salon.devserver.synapse import (
    SynapseLayout,
)
from salon.ids import AgentId, UserId

REQUEST_TIMEOUT_S = 30.0
TOKEN_ENV = "SALON_BENCH_API_TOKEN"
# Turn slots wide enough that the clients, not the fairness limits, set the concurrency
# (every request of a side comes from one sender: the operator, or the API client).
TURN_SLOTS = 64

RoundTrip = Callable[[str], Awaitable[float]]


def bench_config(layout: SynapseLayout, data_dir: Path) -> SalonConfig:
    """``bench/roundtrip.py``'s one-``echo`` config, plus the API and wide turn slots."""
    config = roundtrip_config(layout, data_dir)
    return config.model_copy(
        update={
            "api": ApiConfig(listen="127.0.0.1:0", token_env=TOKEN_ENV),  # any free port
            "turns": TurnsConfig(
                concurrency=TURN_SLOTS, per_agent=TURN_SLOTS, per_sender=TURN_SLOTS
            ),
        }
    )


class ApiClient:
    """Chat completions over plain aiohttp (one pooled session for every client)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.session = session
        self.url = f"{base_url}/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def roundtrip(self, text: str) -> float:
        """One completion of ``text`` by ``echo``; returns the round trip in ms."""
        body = {"model": "echo", "messages": [{"role": "user", "content": text}]}
        start = time.perf_counter()
        async with self.session.post(self.url, json=body, headers=self.headers) as resp:
            data = await resp.json(content_type=None)
        elapsed = (time.perf_counter() - start) * 1000
        if resp.status != 200:
            raise BenchError(f"api: {resp.status} {data}")
        answer = data["choices"][0]["message"]["content"]
        if answer != text:
            raise BenchError(f"api: answer {answer!r}, expected {text!r}")
        return elapsed


async def measure(roundtrip: RoundTrip, side: str, clients: int, total: int) -> dict[str, Any]:
    """``clients`` concurrent clients share ``total`` round trips; stats and requests/s."""
    samples: list[float] = []
    remaining = iter(range(total))

    async def client(c: int) -> None:
        for i in remaining:
            text = f"bench {side} c{clients}.{c}.{i} {secrets.token_hex(4)}"
            samples.append(await asyncio.wait_for(roundtrip(text), REQUEST_TIMEOUT_S))

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - started
    return {**summary(samples), "requests": total, "requests_per_s": round(total / wall, 1)}


async def run(
    layout: SynapseLayout, data_dir: Path, requests: int, warmup: int, levels: list[int]
) -> dict[str, Any]:
    """Start the gateway, measure both sides at each level, return the result object."""
    token = secrets.token_urlsafe(24)
    os.environ[TOKEN_ENV] = token
    connector = aiohttp.TCPConnector(limit=max(levels) * 2)
    async with (
        aiohttp.ClientSession() as op_http,
        aiohttp.ClientSession(connector=connector) as http,
    ):
        operator = Operator(op_http, layout.base_url, await register(op_http, layout, "operator"))
        config = bench_config(layout, data_dir)
        gateway = Gateway(config, invite=[UserId(operator.creds.user_id)])
        cleanups: list[Callable[[], Awaitable[None]]] = []
        try:
            started = time.perf_counter()
            cleanups.append(gateway.stop)
            state = await gateway.start()
            room = state.topology.agent_rooms.get(AgentId("echo"))
            if room is None or gateway.api is None:
                raise BenchError("the gateway started without the echo room or the API")
            await operator.join(room)
            cleanups.append(operator.stop)
            await operator.start_sync([room])
            console.print(
                f"Salon gateway ready, API on {gateway.api.url} "
                f"({time.perf_counter() - started:.1f} s)"
            )
            api = ApiClient(http, gateway.api.url, token)

            async def via_matrix(text: str) -> float:
                return await operator.roundtrip(room, text, "matrix")

            sides: dict[str, RoundTrip] = {"api": api.roundtrip, "matrix": via_matrix}
            for name, roundtrip in sides.items():
                for i in range(warmup):
                    await roundtrip(f"warmup {name} {i} {secrets.token_hex(4)}")
            results: dict[str, dict[str, Any]] = {name: {} for name in sides}
            for n, clients in enumerate(levels):
                order = list(sides) if n % 2 == 0 else list(reversed(sides))
                for name in order:
                    total = max(requests, clients * 4)
                    stats = await measure(sides[name], name, clients, total)
                    results[name][str(clients)] = stats
                    console.print(
                        f"{clients:>3} clients {name:>6}: p50 {stats['p50_ms']:.1f} ms, "
                        f"p95 {stats['p95_ms']:.1f} ms, {stats['requests_per_s']:.1f} req/s"
                    )
        finally:
            for cleanup in reversed(cleanups):
                try:
                    await cleanup()
                except Exception as exc:  # keep cleaning up; the cause is reported
                    console.print(
                        f"cleanup failed: {type(exc).__name__}: {exc}", style="yellow", markup=False
                    )

    ratios = {
        str(c): {
            "p50": round(results["matrix"][str(c)]["p50_ms"] / results["api"][str(c)]["p50_ms"], 2),
            "requests_per_s": round(
                results["api"][str(c)]["requests_per_s"]
                / results["matrix"][str(c)]["requests_per_s"],
                2,
            ),
        }
        for c in levels
    }
    return {
        "requests_per_level": requests,
        "levels": levels,
        "api": results["api"],
        "matrix": results["matrix"],
        "api_advantage": ratios,
        "turn_slots": TURN_SLOTS,
        "synapse": metadata.version("matrix-synapse"),
        "python": platform.python_version(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--requests",
        type=int,
        default=200,
        help="measured round trips per side and level (at least 4 per client)",
    )
    parser.add_argument("--warmup", type=int, default=5, help="uncounted round trips per side")
    parser.add_argument(
        "--levels", default="1,8,32", help="comma-separated numbers of concurrent clients"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep Synapse and the store here (default: a temp dir, removed at the end)",
    )
    args = parser.parse_args(argv)
    try:
        args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
        parser.error("--levels: comma-separated integers, e.g. 1,8,32")
    if args.requests < 1 or args.warmup < 0 or not args.levels or min(args.levels) < 1:
        parser.error("--requests and every level must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; JSON on stdout, exit status 0, 1 (failure) or 130 (interrupted)."""
    args = parse_args(argv)
    return run_bench(
        args.data_dir,
        lambda layout, data_dir: run(layout, data_dir, args.requests, args.warmup, args.levels),
    )


if __name__ == "__main__":
    sys.exit(main())
