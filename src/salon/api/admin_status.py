"""Admin route: ``GET /api/v1/status`` (`salon status`).

Open delegations, turns in flight, loops, store and homeserver, with the same
checks ``/readyz`` makes (:mod:`salon.api.health`).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from salon.api.bodies import JSON
from salon.api.health import check_homeserver, check_loops, check_store, loop_view, open_by_id
from salon.api.server import CONTEXT
from salon.matrix.crypto import device_reports
from salon.store.records import now_ms


async def status(request: web.Request) -> web.Response:
    """``GET /api/v1/status``."""
    ctx = request.app[CONTEXT]
    now = now_ms()
    store_check, homeserver_check = await asyncio.gather(check_store(ctx), check_homeserver(ctx))
    delegations: list[JSON] = []
    turns: list[JSON] = []
    set_aside: list[JSON] = []
    if store_check["ok"]:
        set_aside = [
            {k: getattr(p, k) for k in ("txn_id", "seq", "tries", "reason", "set_aside_at")}
            for p in await ctx.store.appservice_txns.set_aside()
        ]
        for record in open_by_id(await ctx.store.delegations.open()):
            delegations.append(
                {
                    "id": record.id,
                    "from": record.from_agent,
                    "to": record.to_agent,
                    "state": record.state.value,
                    "age_s": max(0, (now - record.created_at) // 1000),
                }
            )
    for event_id, agent_id in ctx.runner.in_flight():
        row: JSON = {"event_id": event_id, "agent": agent_id, "state": None, "attempts": None}
        if store_check["ok"]:
            turn = await ctx.store.turns.get(event_id, agent_id)
            if turn is not None:
                row.update(state=turn.state.value, attempts=turn.attempts)
        turns.append(row)
    loops = [loop_view(loop) for loop in ctx.loops()]
    size = await ctx.store.size_bytes()
    return web.json_response(
        {
            "gateway": ctx.gateway,
            "delegations": delegations,
            "turns_in_flight": turns,
            "loops": loops,
            "loops_restarting": [loop["name"] for loop in loops if loop["backing_off"]],
            "loops_ok": check_loops(ctx)["ok"],
            "store": store_check,
            "store_size_bytes": size,
            "homeserver": homeserver_check,
            # Each identity's encryption device (router, agents, the operator).
            "encryption": device_reports(ctx.identities()),
            "appservice_set_aside": set_aside,
        }
    )
