"""What the benchmarks share: the measuring operator, the echo config, statistics.

The operator user sends over plain aiohttp and watches its own ``/sync`` long-poll,
the same path for every contender. ``bench/roundtrip.py`` and ``bench/api.py``
import this module as a sibling (bench/ is not a package).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from rich.console import Console

from salon import log as salon_log
from salon.config.models import SalonConfig
from salon.devserver.synapse import (
    SynapseLayout,
    SynapseProcess,
    SynapseSettings,
    free_port,
    write_synapse_config,
)
from salon.matrix.registration import Credentials, register_with_shared_secret

REPLY_TIMEOUT_S = 10.0
"""How long one message may wait for its reply before the run fails."""
SYNC_TIMEOUT_MS = 30_000
CLIENT = "/_matrix/client/v3"

console = Console(stderr=True, highlight=False)


class BenchError(Exception):
    """The benchmark cannot go on (reported on stderr, exit status 1)."""


# --- the operator: raw HTTP, the same path for both contenders -------------------


@dataclass
class Operator:
    """The measuring user: sends over plain aiohttp and watches its own ``/sync``."""

    session: aiohttp.ClientSession
    base_url: str
    creds: Credentials
    since: str | None = None
    sync_error: str | None = None
    _waiters: dict[str, asyncio.Future[tuple[float, str]]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One client-server API call; an error answer becomes :class:`BenchError`."""
        headers = {"Authorization": f"Bearer {self.creds.access_token}"}
        url = self.base_url + CLIENT + path
        async with self.session.request(
            method, url, json=body, params=query, headers=headers
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise BenchError(f"{method} {path} answered {resp.status}: {data}")
            return dict(data or {})

    async def create_room(self, invite: list[str]) -> str:
        """A private room with ``invite`` invited; returns its id."""
        body = {"preset": "private_chat", "name": "bench baseline", "invite": invite}
        return str((await self.request("POST", "/createRoom", body))["room_id"])

    async def join(self, room_id: str) -> None:
        """Join (accept the invitation to) ``room_id``."""
        await self.request("POST", f"/join/{quote(room_id, safe='')}", {})

    async def send(self, room_id: str, text: str) -> str:
        """Send an ``m.text`` message; returns its event id."""
        path = f"/rooms/{quote(room_id, safe='')}/send/m.room.message/{uuid.uuid4().hex}"
        data = await self.request("PUT", path, {"msgtype": "m.text", "body": text})
        return str(data["event_id"])

    async def start_sync(self, room_ids: list[str]) -> None:
        """Upload a filter for ``room_ids`` (messages only), sync once, then long-poll."""
        definition = {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "rooms": room_ids,
                "timeline": {"limit": 50, "types": ["m.room.message"]},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
        }
        user = quote(self.creds.user_id, safe="")
        filter_id = str(
            (await self.request("POST", f"/user/{user}/filter", definition))["filter_id"]
        )
        first = await self.request("GET", "/sync", query={"timeout": "0", "filter": filter_id})
        self.since = str(first["next_batch"])
        self._task = asyncio.create_task(self._sync_loop(filter_id), name="operator-sync")

    async def stop(self) -> None:
        """End the sync loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _waiter(self, event_id: str) -> asyncio.Future[tuple[float, str]]:
        fut = self._waiters.get(event_id)
        if fut is None:
            fut = self._waiters[event_id] = asyncio.get_running_loop().create_future()
        return fut

    async def _sync_loop(self, filter_id: str) -> None:
        """Long-poll ``/sync``; each reply resolves the waiter of the event it replies to."""
        while True:
            query = {"timeout": str(SYNC_TIMEOUT_MS), "filter": filter_id}
            if self.since:
                query["since"] = self.since
            try:
                data = await self.request("GET", "/sync", query=query)
            except (aiohttp.ClientError, BenchError, ValueError) as exc:
                self.sync_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.2)
                continue
            seen = time.perf_counter()
            self.since = str(data.get("next_batch") or self.since)
            for room in ((data.get("rooms") or {}).get("join") or {}).values():
                for event in (room.get("timeline") or {}).get("events") or []:
                    content = event.get("content") or {}
                    relates = content.get("m.relates_to") or {}
                    if relates.get("rel_type") == "m.replace":
                        continue  # an edit of a reply, not the reply
                    target = (relates.get("m.in_reply_to") or {}).get("event_id")
                    if not target or event.get("sender") == self.creds.user_id:
                        continue
                    fut = self._waiter(str(target))
                    if not fut.done():
                        fut.set_result((seen, str(content.get("body", ""))))

    async def roundtrip(
        self, room_id: str, text: str, who: str, timeout: float = REPLY_TIMEOUT_S
    ) -> float:
        """Send ``text`` and wait ``timeout`` s for its reply; returns the round trip in ms."""
        start = time.perf_counter()
        event_id = await self.send(room_id, text)
        fut = self._waiter(event_id)
        try:
            seen, body = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            hint = f" (last sync error: {self.sync_error})" if self.sync_error else ""
            raise BenchError(f"{who}: no reply to {event_id} within {timeout:g} s{hint}") from None
        finally:
            self._waiters.pop(event_id, None)
        if text not in body:
            raise BenchError(f"{who}: reply to {event_id} has body {body!r}, expected {text!r}")
        return (seen - start) * 1000


# --- statistics and the config -------------------------------------------------


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p95 (interpolated), mean and max of round trips in ms."""
    p95 = (
        statistics.quantiles(samples, n=20, method="inclusive")[18]
        if len(samples) > 1
        else samples[0]
    )
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(p95, 2),
        "mean_ms": round(statistics.fmean(samples), 2),
        "max_ms": round(max(samples), 2),
    }


def block_sizes(total: int, blocks: int) -> list[int]:
    """Split ``total`` messages into ``blocks`` nearly equal, non-empty blocks."""
    blocks = max(1, min(blocks, total))
    base, extra = divmod(total, blocks)
    return [base + (1 if i < extra else 0) for i in range(blocks)]


def salon_config(layout: SynapseLayout, data_dir: Path, extra_agents: int = 0) -> SalonConfig:
    """One ``echo`` agent (no delay), no start-up jitter, a fresh SQLite store;
    ``extra_agents`` more echo agents beside it (idle: they only could visit its room)."""
    ns = secrets.token_hex(3)
    agents: dict[str, Any] = {"echo": {"label": "Echo", "backend": {"type": "echo"}}}
    for i in range(extra_agents):
        agents[f"idle{i}"] = {"label": f"Idle {i}", "backend": {"type": "echo"}}
    return SalonConfig.model_validate(
        {
            "homeserver": {
                "url": layout.base_url,
                "server_name": layout.server_name,
                "registration_shared_secret": layout.registration_shared_secret,
            },
            "space": {"alias": f"bench-{ns}", "name": f"Bench {ns}"},
            "router": {"localpart": f"bench-{ns}"},
            "naming": {
                "agent_localpart": f"bench-{ns}_{{id}}",
                "agent_room_alias": f"bench-{ns}-{{id}}",
                "lobby_alias": f"bench-{ns}-lobby",
            },
            "agents": agents,
            # The bench's users are fresh ones of the bench's server (access is closed
            # to all but the admins unless opened).
            "access": {"allowed_users": [f"@*:{layout.server_name}"]},
            "sync": {"startup_jitter_s": 0},
            "store": {"url": f"sqlite:///{data_dir / f'salon-bench-{ns}.db'}"},
        }
    )


async def register(session: aiohttp.ClientSession, layout: SynapseLayout, role: str) -> Credentials:
    """A fresh user (random localpart, so a reused ``--data-dir`` works)."""
    return await register_with_shared_secret(
        session,
        layout.base_url,
        layout.registration_shared_secret,
        f"bench-{role}-{secrets.token_hex(4)}",
        secrets.token_urlsafe(16),
    )


def run_bench(
    data_dir_arg: Path | None,
    measure: Callable[[SynapseLayout, Path], Awaitable[dict[str, Any]]],
    app_services: Callable[[SynapseLayout, Path], Sequence[Path]] | None = None,
) -> int:
    """Start a throwaway Synapse (in ``data_dir_arg`` or a temp dir), run ``measure``
    against it, print its JSON on stdout; exit status 0, 1 (failure) or 130 (interrupted).

    ``app_services`` writes appservice registrations for the server about to start and
    returns their paths: Synapse loads them at start. ``SALON_BENCH_LOG``: a file the
    gateway's debug log goes to (JSON lines), for finding out what went wrong."""
    if log_file := os.environ.get("SALON_BENCH_LOG"):
        salon_log.configure("debug", file=Path(log_file), console_level="warning")
    else:
        salon_log.configure("warning")
    # Ctrl-C works even when started in the background (SIGINT inherited as ignored),
    # and SIGTERM takes the same path: the gateway and Synapse are stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        with contextlib.ExitStack() as stack:
            # stdout carries the JSON only: anything else printed meanwhile goes to stderr.
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
            if data_dir_arg is None:
                tmp = tempfile.TemporaryDirectory(prefix="salon-bench-", ignore_cleanup_errors=True)
                data_dir = Path(stack.enter_context(tmp))
            else:
                data_dir = data_dir_arg.resolve()
                data_dir.mkdir(parents=True, exist_ok=True)
            port = free_port()
            layout = write_synapse_config(SynapseSettings(data_dir=data_dir, port=port))
            if app_services is not None:
                files = tuple(app_services(layout, data_dir))
                layout = write_synapse_config(
                    SynapseSettings(data_dir=data_dir, port=port, app_service_config_files=files)
                )
            synapse = SynapseProcess(layout)
            stack.callback(synapse.stop)
            started = time.perf_counter()
            synapse.start()
            console.print(
                f"Synapse {metadata.version('matrix-synapse')} ready on {layout.base_url} "
                f"({time.perf_counter() - started:.1f} s)"
            )
            result = asyncio.run(measure(layout, data_dir))
    except KeyboardInterrupt:
        console.print("interrupted", style="red")
        return 130
    except Exception as exc:
        console.print(f"bench failed: {type(exc).__name__}: {exc}", style="red", markup=False)
        return 1
    print(json.dumps(result))
    return 0
