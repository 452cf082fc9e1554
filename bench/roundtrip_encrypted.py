"""The round trip in encrypted rooms: Salon's ``echo`` agent versus a bare
matrix-nio echo bot that also encrypts (vodozemac), client mode, one Synapse.

The operator is a matrix-nio client with encryption on: it opens an encrypted DM
with each contender, sends each message encrypted, and times send → the reply
seen in its own /sync and decrypted. Called by ``roundtrip.py --encrypted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
from common import BenchError, block_sizes, console, register, salon_config, summary
from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    MatrixRoom,
    RoomMessageText,
)

from salon.app.gateway import Gateway
from salon.devserver.synapse import SynapseLayout
from salon.ids import AgentId, UserId
from salon.matrix.registration import Credentials

ENCRYPTED = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
REPLY_TIMEOUT_S = 30.0
SYNC_TIMEOUT_MS = 30_000


def _client(creds: Credentials, base_url: str, store: Path) -> AsyncClient:
    store.mkdir(parents=True, exist_ok=True)
    client = AsyncClient(
        base_url,
        creds.user_id,
        device_id=creds.device_id,
        store_path=str(store),
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
    )
    client.restore_login(creds.user_id, creds.device_id, creds.access_token)
    return client


class Syncing:
    """A nio client whose sync loop (keys uploaded, queried, claimed by nio) runs
    in the background once :meth:`start` is called."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.sync(timeout=0, full_state=True)
        self._task = asyncio.create_task(
            self.client.sync_forever(timeout=SYNC_TIMEOUT_MS), name=f"nio-{self.client.user_id}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()


def _reply_target(event: RoomMessageText) -> str | None:
    relates = (event.source.get("content") or {}).get("m.relates_to") or {}
    if relates.get("rel_type") == "m.replace":
        return None  # an edit of a reply, not the reply
    target = (relates.get("m.in_reply_to") or {}).get("event_id")
    return str(target) if target else None


class NioEchoBot(Syncing):
    """The baseline: joins what it is invited to, answers every text (encrypted in
    an encrypted room, as nio does) with the same body, as a reply."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        client.add_event_callback(self._on_invite, InviteMemberEvent)
        client.add_event_callback(self._on_text, RoomMessageText)

    async def _on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self.client.join(room.room_id)

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == self.client.user_id:
            return
        content = {
            "msgtype": "m.text",
            "body": event.body,
            "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
        }
        await self.client.room_send(
            room.room_id, "m.room.message", content, ignore_unverified_devices=True
        )


class NioOperator(Syncing):
    """The measuring person: sends encrypted, sees replies decrypted."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        self._waiters: dict[str, asyncio.Future[tuple[float, str]]] = {}
        client.add_event_callback(self._on_text, RoomMessageText)

    def _waiter(self, event_id: str) -> asyncio.Future[tuple[float, str]]:
        fut = self._waiters.get(event_id)
        if fut is None:
            fut = self._waiters[event_id] = asyncio.get_running_loop().create_future()
        return fut

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        seen = time.perf_counter()
        target = _reply_target(event)
        if target is None or event.sender == self.client.user_id:
            return
        fut = self._waiter(target)
        if not fut.done():
            fut.set_result((seen, event.body))

    async def open_dm(self, user_id: str) -> str:
        """An encrypted DM with ``user_id``, once it has joined."""
        created = await self.client.room_create(
            is_direct=True, invite=[user_id], initial_state=[ENCRYPTED]
        )
        room_id = getattr(created, "room_id", None)
        if not room_id:
            raise BenchError(f"could not create a room with {user_id}: {created}")
        deadline = time.monotonic() + 60
        while True:
            room = self.client.rooms.get(room_id)
            invited = room is None or user_id in room.invited_users
            if room is not None and room.encrypted and user_id in room.users and not invited:
                return str(room_id)
            if time.monotonic() > deadline:
                raise BenchError(f"{user_id} did not join its encrypted DM")
            await asyncio.sleep(0.1)

    async def roundtrip(self, room_id: str, text: str, who: str) -> float:
        """Send ``text`` encrypted and wait for its reply; returns the round trip in ms."""
        start = time.perf_counter()
        sent = await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": text},
            ignore_unverified_devices=True,
        )
        event_id = getattr(sent, "event_id", None)
        if not event_id:
            raise BenchError(f"{who}: could not send: {sent}")
        fut = self._waiter(event_id)
        try:
            seen, body = await asyncio.wait_for(fut, REPLY_TIMEOUT_S)
        except TimeoutError:
            raise BenchError(
                f"{who}: no reply to {event_id} within {REPLY_TIMEOUT_S:g} s"
            ) from None
        finally:
            self._waiters.pop(event_id, None)
        if text not in body:
            raise BenchError(f"{who}: reply to {event_id} has body {body!r}, expected {text!r}")
        return (seen - start) * 1000


async def run(
    layout: SynapseLayout, data_dir: Path, messages: int, warmup: int, blocks: int
) -> dict[str, Any]:
    """Both contenders in encrypted DMs, measured alternately; the result object."""
    async with aiohttp.ClientSession() as http:
        op_creds = await register(http, layout, "operator")
        bot_creds = await register(http, layout, "nio-bot")
    operator = NioOperator(_client(op_creds, layout.base_url, data_dir / "nio-operator"))
    bot = NioEchoBot(_client(bot_creds, layout.base_url, data_dir / "nio-bot"))
    config = salon_config(layout, data_dir)
    gateway = Gateway(config, invite=[UserId(op_creds.user_id)])
    cleanups: list[Callable[[], Awaitable[None]]] = []
    try:
        started = time.perf_counter()
        cleanups.append(gateway.stop)
        await gateway.start()
        console.print(f"Salon gateway ready ({time.perf_counter() - started:.1f} s)")
        cleanups.append(bot.stop)
        await bot.start()
        cleanups.append(operator.stop)
        await operator.start()
        echo = str(config.agent_user_id(AgentId("echo"), layout.server_name))
        contenders = {
            "baseline_nio": await operator.open_dm(str(bot.client.user_id)),
            "salon": await operator.open_dm(echo),
        }
        console.print("encrypted DMs open with the nio echo bot and Salon's echo agent")
        for name, room in contenders.items():
            for i in range(warmup):
                await operator.roundtrip(room, f"warmup {name} {i} {secrets.token_hex(4)}", name)
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
    base = summary(samples["baseline_nio"])
    return {
        "mode": "client",
        "room": "encrypted",
        "baseline": "matrix-nio echo bot with encryption (vodozemac), logged in, /sync",
        "operator": "matrix-nio client with encryption: sends encrypted, times the reply decrypted",
        "messages": messages,
        "salon": salon,
        "baseline_nio": base,
        "ratio_p50": round(salon["p50_ms"] / base["p50_ms"], 3),
        "ratio_p95": round(salon["p95_ms"] / base["p95_ms"], 3),
        "synapse": metadata.version("matrix-synapse"),
        "matrix_nio": metadata.version("matrix-nio"),
    }
