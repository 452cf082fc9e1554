"""`salon run`: the gateway until SIGINT/SIGTERM, with ``<data_dir>/api.json`` while its
HTTP API listens (so `salon who` and the others find it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from salon.app.gateway import Gateway, ReloadSource, on_stop_signals
from salon.cli import api_file
from salon.cli.api_file import ApiFile
from salon.config.models import SalonConfig


async def serve(
    config: SalonConfig,
    data_dir: Path,
    console: Console,
    *,
    stop: asyncio.Event | None = None,
    gateway: Gateway | None = None,
    load: Callable[[], SalonConfig] | None = None,
    watch: Path | None = None,
) -> None:
    """Start the gateway, publish its API in ``api.json``, run until stopped, stop.

    The token written is the server's: the value of ``api.token_env``, or the random
    one made at start without it; the file goes once the gateway stops listening. ``load`` and
    ``watch``: how to read the config again, and the file whose changes reload it.
    """
    stop = stop or asyncio.Event()
    gateway = gateway or Gateway(config, reload=ReloadSource(load, watch))
    # The first signal drains running turns (shutdown.drain_s); a second stops at once.
    on_stop_signals(stop, gateway.stop_now)
    graceful = False
    try:
        await gateway.start()
        if gateway.api is not None:
            url = api_file.client_url(gateway.api.config.host, gateway.api.port)
            saved = ApiFile(
                url=url,
                token=gateway.api.token,
                pid=os.getpid(),
                dashboard_url=gateway.api.login_link(url),
            )
            path = saved.save(data_dir)
            console.print(
                f"HTTP API on {escape(saved.url)} (URL and token in {escape(str(path))})",
                highlight=False,
            )
            # One line, never wrapped: the link logs a browser in once.
            console.print(f"Dashboard: {saved.dashboard_url}", highlight=False, soft_wrap=True)
        await stop.wait()
        graceful = True
    finally:
        api_file.remove(data_dir, pid=os.getpid())
        await (gateway.shutdown() if graceful else gateway.stop())
