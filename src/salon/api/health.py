"""Routes: ``/healthz`` (process alive), ``/readyz`` (ready to serve), ``/metrics``.

``/readyz`` checks what the gateway needs to answer anyone: every receive and
supervised loop running and not backing off, the store taking a write, and the
homeserver answering. Its JSON body names what is wrong, check by check::

    {"ready": false,
     "checks": {"loops": {"ok": false, "failing": [{"name": "sync:@salon:localhost", …}]},
                "store": {"ok": true},
                "homeserver": {"ok": false, "error": "no answer"}},
     "problems": ["loop sync:@salon:localhost is backing off (…)", "homeserver: no answer"]}

``/metrics`` is the default Prometheus registry in the text format; the gauges
read from the store (inbox depth, open delegations by state) are set just before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import REGISTRY, generate_latest

from salon.api.context import ApiContext, LoopState
from salon.api.server import CONTEXT
from salon.metrics import DELEGATIONS_OPEN, INBOX_DEPTH
from salon.store.delegations import TERMINAL_PHASES, DelegationPhase, DelegationRecord
from salon.store.records import InboxState

log = structlog.get_logger("salon.api.health")

# The classic text format: every Prometheus server reads it (Salon's names are all legacy-safe).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
READY_KEY = "api:readyz"  # the kv row `/readyz` writes to prove the store is writable
CHECK_TIMEOUT_S = 3.0
OPEN_PHASES = [p for p in DelegationPhase if p not in TERMINAL_PHASES]
_PHASE_ORDER = list(DelegationPhase)


# --- checks (also used by /api/v1/status) --------------------------------------------


def loop_view(loop: LoopState) -> dict[str, Any]:
    """One loop as JSON."""
    return {
        "name": loop.name,
        "running": loop.running,
        "restarts": loop.restarts,
        "backing_off": loop.backing_off,
        "last_error": loop.last_error,
    }


def check_loops(ctx: ApiContext) -> dict[str, Any]:
    """Every loop running and not backing off; the others listed. MCP servers (``mcp:*``)
    are shown in the status but never make the gateway unready: it still answers."""
    loops = [loop for loop in ctx.loops() if not loop.name.startswith("mcp:")]
    failing = [loop_view(loop) for loop in loops if not loop.running or loop.backing_off]
    return {"ok": not failing, "failing": failing}


async def check_store(ctx: ApiContext) -> dict[str, Any]:
    """The store takes a write (a kv row), within a few seconds."""
    try:
        await asyncio.wait_for(
            ctx.store.kv.set(READY_KEY, str(int(time.time() * 1000))), CHECK_TIMEOUT_S
        )
    except TimeoutError:
        return {"ok": False, "error": f"no write within {CHECK_TIMEOUT_S:g} s"}
    except Exception as e:  # whatever the driver raises, the answer is "not writable"
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"ok": True}


async def check_homeserver(ctx: ApiContext) -> dict[str, Any]:
    """The homeserver answers (the gateway's own cheap call, bounded in time)."""
    if ctx.homeserver_ok is None:
        return {"ok": True, "checked": False}
    try:
        ok = await asyncio.wait_for(ctx.homeserver_ok(), CHECK_TIMEOUT_S + 1)
    except TimeoutError:
        ok = False
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"ok": True} if ok else {"ok": False, "error": "no answer"}


def problems(checks: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong, one line each."""
    lines = []
    for loop in checks["loops"]["failing"]:
        what = "is backing off" if loop["backing_off"] else "is not running"
        error = f" ({loop['last_error']})" if loop["last_error"] else ""
        lines.append(f"loop {loop['name']} {what}{error}")
    for name in ("store", "homeserver"):
        if not checks[name]["ok"]:
            lines.append(f"{name}: {checks[name].get('error', 'failing')}")
    return lines


async def readiness(ctx: ApiContext) -> dict[str, Any]:
    """The answer of ``/readyz``: ``ready``, each check, and what is wrong."""
    store, homeserver = await asyncio.gather(check_store(ctx), check_homeserver(ctx))
    checks = {"loops": check_loops(ctx), "store": store, "homeserver": homeserver}
    return {
        "ready": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "problems": problems(checks),
    }


# --- open delegations, one per id -------------------------------------------------------


def open_by_id(records: Iterable[DelegationRecord]) -> list[DelegationRecord]:
    """Open delegations, one per id: with both agents in this gateway the store has a
    row each way under one id; the one shown is the side furthest along (oldest first)."""
    by_id: dict[str, DelegationRecord] = {}
    for record in records:
        if record.state in TERMINAL_PHASES:
            continue
        known = by_id.get(record.id)
        if known is None or _PHASE_ORDER.index(record.state) > _PHASE_ORDER.index(known.state):
            by_id[record.id] = record
    return sorted(by_id.values(), key=lambda r: (r.created_at, r.id))


async def set_scrape_gauges(ctx: ApiContext) -> None:
    """Set the gauges that are read from the store when scraped."""
    INBOX_DEPTH.set(await ctx.store.inbox.count(InboxState.NEW))
    counts = dict.fromkeys(OPEN_PHASES, 0)
    for record in open_by_id(await ctx.store.delegations.open()):
        counts[record.state] = counts.get(record.state, 0) + 1
    for phase, count in counts.items():
        DELEGATIONS_OPEN.labels(state=phase.value).set(count)


# --- routes -----------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving HTTP (no auth)."""
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """200 when ready to serve, else 503; the body says what is wrong."""
    body = await readiness(request.app[CONTEXT])
    return web.json_response(body, status=200 if body["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (store-read gauges set first; a failing store leaves them)."""
    try:
        await asyncio.wait_for(set_scrape_gauges(request.app[CONTEXT]), CHECK_TIMEOUT_S)
    except Exception as e:
        log.warning("metrics.store_gauges_failed", error=f"{type(e).__name__}: {e}")
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": METRICS_CONTENT_TYPE}
    )


def add_routes(app: web.Application) -> None:
    """Add this module's routes to ``app``."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
