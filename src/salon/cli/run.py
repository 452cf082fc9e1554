"""`salon run`: the gateway until SIGINT/SIGTERM, with ``<data_dir>/api.json`` while its
HTTP API listens (so `salon who` and the others find it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from salon.cli import api_file
from salon.cli.api_file import ApiFile
from salon.config.models import SalonConfig
from salon.gateway.app import Gateway


async def serve(
    config: SalonConfig,
    data_dir: Path,
    console: Console,
    *,
    stop: asyncio.Event | None = None,
    gateway: Gateway | None = None,
) -> None:
    """Start the gateway, publish its API in ``api.json``, run until stopped, stop.

    The token written is the value of ``api.token_env`` (none if the config names
    no variable); the file goes once the gateway stops listening.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    gateway = gateway or Gateway(config)
    try:
        await gateway.start()
        if gateway.api is not None and config.api is not None:
            env = config.api.token_env
            saved = ApiFile(
                url=api_file.client_url(gateway.api.config.host, gateway.api.port),
                token=os.environ.get(env) if env else None,
                pid=os.getpid(),
            )
            path = saved.save(data_dir)
            console.print(
                f"HTTP API on {escape(saved.url)} (URL and token in {escape(str(path))})",
                highlight=False,
            )
        await stop.wait()
    finally:
        api_file.remove(data_dir, pid=os.getpid())
        await gateway.stop()
