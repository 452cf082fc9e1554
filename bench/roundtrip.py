"""Round trip through Salon's ``echo`` agent versus a bare mautrix echo bot.

Starts a throwaway Synapse, a Salon gateway (in this process) with one ``echo``
agent, and a minimal mautrix echo bot on the same homeserver. An operator user
sends messages one at a time to each and measures send → reply seen, with its
own ``/sync`` long-poll loop. Prints one JSON object on stdout; progress goes to
stderr.

``--mode appservice`` runs the gateway as an application service, and the
baseline is then a bare mautrix ``AppService`` echoing through its bot (see
``as_baseline.py``): Synapse starts with both registrations and pushes both.

Usage::

    .venv/bin/python bench/roundtrip.py [--messages N] [--warmup W] [--extra-agents K]
        [--mode client|appservice] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import aiohttp
from as_baseline import EchoAppservice
from common import (
    BenchError,
    Operator,
    block_sizes,
    console,
    register,
    run_bench,
    salon_config,
    summary,
)
from mautrix.api import HTTPAPI
from mautrix.client import Client, InternalEventType
from mautrix.types import (
    DeviceID,
    EventType,
    InReplyTo,
    MessageEvent,
    MessageType,
    RelatesTo,
    RoomID,
    TextMessageEventContent,
    UserID,
)
from mautrix.util.logging import TraceLogger

from salon.app.gateway import Gateway
from salon.config.models import SalonConfig
from salon.devserver.appservice import write_registration
from salon.devserver.synapse import SynapseLayout, free_port
from salon.ids import AgentId, UserId
from salon.matrix.registration import Credentials

# --- the baseline: a bare mautrix echo bot --------------------------------------


def _mautrix_logger(name: str) -> TraceLogger:
    """A ``mau.bench.<name>`` logger of mautrix's own class.

    mautrix calls ``log.silly()``, which only its ``TraceLogger`` has; structlog
    (configured by Salon's logging) swaps the default logger class for its own.
    """
    previous = logging.getLoggerClass()
    logging.setLoggerClass(TraceLogger)
    try:
        return cast(TraceLogger, logging.getLogger(f"mau.bench.{name}"))
    finally:
        logging.setLoggerClass(previous)


class EchoBot:
    """The smallest useful mautrix bot: replies to every text with the same body."""

    def __init__(self, creds: Credentials, base_url: str, session: aiohttp.ClientSession) -> None:
        api = HTTPAPI(
            base_url, creds.access_token, client_session=session, log=_mautrix_logger("bot")
        )
        self.client = Client(UserID(creds.user_id), DeviceID(creds.device_id), api=api)
        self.client.ignore_initial_sync = True
        self.client.ignore_first_sync = True
        self.client.add_event_handler(EventType.ROOM_MESSAGE, self._on_message)
        self.client.add_event_handler(InternalEventType.SYNC_SUCCESSFUL, self._on_synced)
        self._synced = asyncio.Event()

    async def _on_synced(self, data: Any) -> None:
        self._synced.set()

    async def _on_message(self, evt: MessageEvent) -> None:
        if evt.sender == self.client.mxid or not isinstance(evt.content, TextMessageEventContent):
            return
        relates = RelatesTo(in_reply_to=InReplyTo(event_id=evt.event_id))
        await self.client.send_text(
            evt.room_id, evt.content.body, msgtype=MessageType.TEXT, relates_to=relates
        )

    async def start(self, room_id: str) -> None:
        """Join ``room_id`` (it is invited) and start syncing; returns after the first sync."""
        await self.client.join_room_by_id(RoomID(room_id))
        self.client.start(None)
        await asyncio.wait_for(self._synced.wait(), 30)

    def stop(self) -> None:
        """Stop the sync loop."""
        self.client.stop()


def bot_mxid(bot: EchoBot | EchoAppservice) -> str:
    """The baseline's user id (invited to its room)."""
    return str(bot.client.mxid) if isinstance(bot, EchoBot) else bot.mxid


# --- the run ---------------------------------------------------------------------


class Appservices:
    """Appservice mode: Salon's registration and the baseline appservice's, written
    before Synapse starts (it loads registrations at start only)."""

    def __init__(self, extra_agents: int) -> None:
        self.extra_agents = extra_agents
        self.config: SalonConfig | None = None
        self.baseline: EchoAppservice | None = None
        self.secrets: dict[str, str] = {}

    def register(self, layout: SynapseLayout, data_dir: Path) -> list[Path]:
        """Write both registrations; returns their paths."""
        data = salon_config(layout, data_dir, self.extra_agents).model_dump(
            mode="json", exclude_none=True
        )
        data["homeserver"] = {
            "url": layout.base_url,
            "server_name": layout.server_name,
            "mode": "appservice",
            "appservice": {"listen": f"127.0.0.1:{free_port()}"},
        }
        self.config = config = SalonConfig.model_validate(data)
        assert config.homeserver is not None and config.homeserver.appservice is not None
        tokens = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        appservice = config.homeserver.appservice
        self.secrets = {appservice.as_token_env: tokens[0], appservice.hs_token_env: tokens[1]}
        salon_file = data_dir / "salon-registration.yaml"
        write_registration(config, salon_file, data_dir / "salon-registration.env", tokens)
        self.baseline = EchoAppservice(layout, data_dir, _mautrix_logger("appservice"))
        return [salon_file, self.baseline.write_registration(data_dir / "baseline-as.yaml")]


async def run(
    layout: SynapseLayout,
    data_dir: Path,
    messages: int,
    warmup: int,
    blocks: int,
    extra_agents: int = 0,
    appservices: Appservices | None = None,
) -> dict[str, Any]:
    """Set up both contenders, measure them alternately, return the result object."""
    async with aiohttp.ClientSession() as op_http, aiohttp.ClientSession() as bot_http:
        operator = Operator(op_http, layout.base_url, await register(op_http, layout, "operator"))
        invite = [UserId(operator.creds.user_id)]
        if appservices is None:
            bot: EchoBot | EchoAppservice = EchoBot(
                await register(bot_http, layout, "bot"), layout.base_url, bot_http
            )
            gateway = Gateway(salon_config(layout, data_dir, extra_agents), invite=invite)
        else:
            assert appservices.config is not None and appservices.baseline is not None
            bot = appservices.baseline
            gateway = Gateway(appservices.config, invite=invite, secrets=appservices.secrets)
        cleanups: list[Callable[[], Awaitable[None]]] = []
        try:
            started = time.perf_counter()
            cleanups.append(gateway.stop)
            state = await gateway.start()
            salon_room = state.topology.agent_rooms.get(AgentId("echo"))
            if salon_room is None:
                raise BenchError("the gateway started without a room for the echo agent")
            await operator.join(salon_room)
            console.print(f"Salon gateway ready ({time.perf_counter() - started:.1f} s)")

            bot_room = await operator.create_room([bot_mxid(bot)])

            async def stop_bot() -> None:
                if isinstance(bot, EchoBot):
                    bot.stop()
                else:
                    await bot.stop()

            cleanups.append(stop_bot)
            await bot.start(bot_room)
            console.print(f"mautrix echo {'bot' if appservices is None else 'appservice'} ready")

            cleanups.append(operator.stop)
            await operator.start_sync([salon_room, bot_room])
            contenders = {"baseline_mautrix": bot_room, "salon": salon_room}

            for name, room in contenders.items():
                for i in range(warmup):
                    await operator.roundtrip(
                        room, f"warmup {name} {i} {secrets.token_hex(4)}", name
                    )
            samples: dict[str, list[float]] = {name: [] for name in contenders}
            sizes = block_sizes(messages, blocks)
            for b, size in enumerate(sizes):
                order = list(contenders) if b % 2 == 0 else list(reversed(contenders))
                for name in order:
                    for i in range(size):
                        text = f"bench {name} {b}.{i} {secrets.token_hex(4)}"
                        samples[name].append(await operator.roundtrip(contenders[name], text, name))
                line = ", ".join(
                    f"{name} p50 {statistics.median(samples[name][-size:]):.1f} ms"
                    for name in contenders
                )
                console.print(f"block {b + 1}/{len(sizes)} ({size} each): {line}")
        finally:
            for cleanup in reversed(cleanups):
                try:
                    await cleanup()
                except Exception as exc:  # keep cleaning up; the cause is reported
                    console.print(
                        f"cleanup failed: {type(exc).__name__}: {exc}", style="yellow", markup=False
                    )

    salon = summary(samples["salon"])
    base = summary(samples["baseline_mautrix"])
    return {
        "mode": "client" if appservices is None else "appservice",
        "baseline": (
            "mautrix Client echo bot (logged in, /sync)"
            if appservices is None
            else "mautrix AppService echo bot (transactions pushed by Synapse)"
        ),
        "messages": messages,
        "extra_agents": extra_agents,
        "salon": salon,
        "baseline_mautrix": base,
        "ratio_p50": round(salon["p50_ms"] / base["p50_ms"], 3),
        "ratio_p95": round(salon["p95_ms"] / base["p95_ms"], 3),
        "synapse": metadata.version("matrix-synapse"),
        "python": platform.python_version(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50, help="measured messages per side")
    parser.add_argument("--warmup", type=int, default=5, help="uncounted messages per side first")
    parser.add_argument("--blocks", type=int, default=5, help="alternating blocks per side")
    parser.add_argument(
        "--extra-agents",
        type=int,
        default=0,
        help="idle agents hosted beside the echo agent (default 0)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep Synapse and the store here (default: a temp dir, removed at the end)",
    )
    parser.add_argument(
        "--mode",
        choices=("client", "appservice"),
        default="client",
        help="Salon's homeserver mode; the baseline is a mautrix bot of the same kind",
    )
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="encrypted DMs, against a matrix-nio echo bot that encrypts (client mode)",
    )
    args = parser.parse_args(argv)
    if args.encrypted and args.mode != "client":
        parser.error("--encrypted measures client mode only")
    if args.messages < 1 or args.warmup < 0 or args.blocks < 1 or args.extra_agents < 0:
        parser.error("--messages and --blocks must be >= 1, --warmup and --extra-agents >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; JSON on stdout, exit status 0, 1 (failure) or 130 (interrupted)."""
    args = parse_args(argv)
    appservices = Appservices(args.extra_agents) if args.mode == "appservice" else None
    if args.encrypted:
        import roundtrip_encrypted  # nio with its e2e extra: loaded only when asked

        return run_bench(
            args.data_dir,
            lambda layout, data_dir: roundtrip_encrypted.run(
                layout, data_dir, args.messages, args.warmup, args.blocks
            ),
        )
    return run_bench(
        args.data_dir,
        lambda layout, data_dir: run(
            layout,
            data_dir,
            args.messages,
            args.warmup,
            args.blocks,
            args.extra_agents,
            appservices,
        ),
        appservices.register if appservices is not None else None,
    )


if __name__ == "__main__":
    sys.exit(main())
