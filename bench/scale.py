"""Figures for scale (issue 15 §4): Salon's own cost per message, and hosting N agents.

Parts (``--part``, comma-separated; default ``cost,hosting``):

- ``cost``: no homeserver. A gateway on the in-memory fake of ``tests/fake_matrix.py``
  with ``--cost-agents`` echo agents; messages per CPU second through admit → route →
  turn → send, p50/p95 per message, against the harness's own floor in the same run,
  and (``--profile``) where the time goes (cProfile). See ``bench/scale_cost.py``.
- ``hosting``: against a throwaway Synapse, for each ``--agents`` count (default
  ``10,100``) in ``--mode`` (``client`` or ``appservice``): gateway RSS once all are
  online, cold provisioning vs raw mautrix (a client per user, or an appservice's
  ``IntentAPI``) doing the same registrations, room creations and joins, warm restart
  until every agent answers, and the round trip to agent #N vs agent #1. See
  ``bench/scale_hosting.py`` and ``bench/scale_appservice.py``.
- ``gateways``: two ``salon run`` processes on one throwaway PostgreSQL and a throwaway
  Synapse, ``--messages`` messages over ``--gw-agents`` echo agents, the first gateway
  killed with -9 once half are answered: replies per message (exactly one each) and
  the time from the kill until the other finished the killed one's claimed work. See
  ``bench/scale_gateways.py``.

Prints one JSON object on stdout; progress on stderr.

Usage::

    .venv/bin/python bench/scale.py --part cost --messages 2000 --profile
    .venv/bin/python bench/scale.py --part cost --log-level warning   # without log lines
    .venv/bin/python bench/scale.py --part hosting --agents 10,100
    .venv/bin/python bench/scale.py --part hosting --mode appservice --agents 1000
    .venv/bin/python bench/scale.py --part gateways --messages 200 --gw-agents 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # common.py and the parts are siblings (bench/ is no package)
sys.path.insert(0, str(ROOT.parent))  # tests.fake_matrix

from common import console, run_bench  # noqa: E402

from salon import log as salon_log  # noqa: E402

PARTS = ("cost", "hosting", "gateways")


def appservice_missing() -> str | None:
    """Why appservice mode cannot be measured in this tree, or None if it can."""
    from salon.config.models import HomeserverConfig

    field = HomeserverConfig.model_fields.get("mode")
    if field is None or "appservice" not in typing.get_args(field.annotation):
        return "homeserver.mode has no 'appservice' in this gateway (not built yet)"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--part", default="cost,hosting", help=f"comma-separated of {PARTS}")
    parser.add_argument(
        "--messages", type=int, default=2000, help="cost: measured messages per side"
    )
    parser.add_argument("--warmup", type=int, default=100, help="cost: uncounted messages per side")
    parser.add_argument("--clients", type=int, default=32, help="cost: messages in flight")
    parser.add_argument("--cost-agents", type=int, default=10, help="cost: echo agents")
    parser.add_argument("--profile", action="store_true", help="cost: one more pass under cProfile")
    parser.add_argument("--profile-out", type=Path, default=None, help="cost: pstats file")
    parser.add_argument("--top", type=int, default=25, help="cost: functions in the profile's top")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="cost: the gateway's log level (its JSON file, as `salon run` writes it; the"
        " default is the gateway's own default, so the figure is what users get)",
    )
    parser.add_argument("--agents", default="10,100", help="hosting: comma-separated agent counts")
    parser.add_argument("--mode", choices=("client", "appservice"), default="client")
    parser.add_argument(
        "--roundtrips", type=int, default=20, help="hosting: round trips per agent measured"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="hosting: keep Synapse here")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="hosting: skip raw mautrix's provisioning and the homeserver floor (faster)",
    )
    parser.add_argument(
        "--stop-after",
        choices=("cold", "first", "warm", "all"),
        default="all",
        help="hosting: stop after the cold start, the first answer-all, the warm restart",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="N",
        help="hosting: trace Python allocations over the cold start, print the top N sites"
        " (tracing adds to the RSS figures)",
    )
    parser.add_argument(
        "--log-file", type=Path, default=None, help="the gateway's JSON log (debug) goes here"
    )
    parser.add_argument("--gw-agents", type=int, default=20, help="gateways: echo agents")
    parser.add_argument(
        "--lease-s", type=float, default=10.0, help="gateways: cluster.lease_s (the default)"
    )
    args = parser.parse_args(argv)
    args.part = [p.strip() for p in args.part.split(",") if p.strip()]
    if not args.part or any(p not in PARTS for p in args.part):
        parser.error(f"--part: comma-separated of {', '.join(PARTS)}")
    try:
        args.agents = [int(x) for x in args.agents.split(",") if x.strip()]
    except ValueError:
        parser.error("--agents: comma-separated integers, e.g. 10,100")
    if args.messages < 4 or args.clients < 1 or args.cost_agents < 1 or min(args.agents) < 1:
        parser.error("--messages >= 4, --clients, --cost-agents and --agents >= 1")
    return args


def cost_part(args: argparse.Namespace) -> dict[str, Any]:
    from scale_cost import run_cost

    return asyncio.run(
        run_cost(
            messages=args.messages,
            warmup=args.warmup,
            clients=args.clients,
            agents=args.cost_agents,
            profile=args.profile,
            top=args.top,
            profile_out=args.profile_out,
            log_level=args.log_level,
        )
    )


def hosting_part(args: argparse.Namespace) -> dict[str, Any]:
    if args.mode == "appservice" and (why := appservice_missing()) is not None:
        return {"mode": "appservice", "status": "not available", "reason": why}
    from scale_appservice import Registrations, write_registrations
    from scale_hosting import HostingPlan, run_hosting

    out: dict[str, Any] = {}
    registrations: list[Registrations] = []

    def appservices(data_dir: Path, server_name: str) -> list[Path]:
        registrations.append(write_registrations(data_dir, server_name))
        return registrations[0].files

    async def measure(layout: Any, data_dir: Path) -> dict[str, Any]:
        reg = registrations[0] if registrations else None
        plan = HostingPlan(args.roundtrips, not args.no_baseline, args.stop_after, args.tracemalloc)
        return await run_hosting(layout, data_dir, args.agents, reg, plan)

    as_mode = args.mode == "appservice"
    with contextlib.redirect_stdout(_Capture(out)):
        status = run_bench(
            args.data_dir,
            measure,
            (lambda layout, data_dir: appservices(data_dir, layout.server_name))
            if as_mode
            else None,
        )
    if status != 0:
        raise SystemExit(status)
    return out


def gateways_part(args: argparse.Namespace) -> dict[str, Any]:
    """Two gateways on one throwaway PostgreSQL (``--messages`` as given, e.g. 200)."""
    from scale_gateways import run_gateways
    from tests import pg_server

    out: dict[str, Any] = {}
    server = pg_server.start()
    try:

        async def measure(layout: Any, data_dir: Path) -> dict[str, Any]:
            return await run_gateways(
                layout,
                data_dir,
                server.fresh_url(),
                agents=args.gw_agents,
                messages=args.messages,
                lease_s=args.lease_s,
            )

        with contextlib.redirect_stdout(_Capture(out)):
            status = run_bench(args.data_dir, measure)
    finally:
        server.stop()
    if status != 0:
        raise SystemExit(status)
    return out


class _Capture:
    """Takes the one JSON line :func:`common.run_bench` prints."""

    def __init__(self, into: dict[str, Any]) -> None:
        self.into = into

    def write(self, text: str) -> int:
        if text.strip():
            self.into.update(json.loads(text))
        return len(text)

    def flush(self) -> None: ...


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    salon_log.configure("warning")
    if args.log_file is not None:  # common.run_bench configures the log from it
        os.environ["SALON_BENCH_LOG"] = str(args.log_file.resolve())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    result: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for part in args.part:
            console.print(f"part {part}")
            if part == "cost":
                result["cost"] = cost_part(args)
            elif part == "hosting":
                result["hosting"] = hosting_part(args)
            else:
                result["gateways"] = gateways_part(args)
    except KeyboardInterrupt:
        console.print("interrupted", style="red")
        return 130
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
