"""What the operator does from the terminal: list agents, send, read."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from salon._exceptions import MatrixConnectionError, MatrixError, SalonError
from salon.cli.operator_file import OperatorFile
from salon.coordination.heartbeat import AGENT_STATE, AgentStatus, effective_status, parse_state
from salon.gateway.sessions import SESSION_STATE
from salon.ids import RoomAlias, RoomId, UserId
from salon.matrix.api import SESSION_TIMEOUT, MatrixAPI

TURN_KEY = "com.salon.turn"


# `salon read` pages back through at most this many events looking for messages
# (edits, reactions and state events do not count).
READ_SCAN_LIMIT = 5000


class ReplyTimeout(SalonError):
    """No reply arrived in time."""


class EncryptedRoom(SalonError):
    """The CLI on its own has no encryption device: it posts nothing in clear there."""

    def __init__(self, alias: str) -> None:
        super().__init__(
            f"{alias} is encrypted and the CLI has no encryption device of its own: send"
            " through the running gateway's API (it holds the operator's device; `salon send`"
            " uses it when the gateway runs with an `api:` section, as `salon up` does)"
        )


class HomeserverUnreachable(SalonError):
    """The homeserver of ``operator.json`` does not answer."""

    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(f"the homeserver at {url} is unreachable ({_short(cause)})")
        self.url = url


def _short(error: Exception) -> str:
    """What went wrong, without the request name (``what: homeserver unreachable: …``)."""
    text = str(error)
    marker = "homeserver unreachable: "
    if marker in text:
        text = text.split(marker, 1)[1]
    # Drop the library's class name: "ClientConnectorError: Cannot connect…" → "Cannot connect…"
    return re.sub(r"^\w+(Error|Exception): ", "", text).strip() or "no answer"


@dataclass(frozen=True)
class AgentRow:
    """One line of `salon who`."""

    agent: str
    user_id: str
    alias: str
    status: AgentStatus
    last_beat_ms: int | None
    temporary_until_ms: int | None = None  # a session agent (`salon agent spawn`)


@dataclass(frozen=True)
class WhoResult:
    """Agents found, and whether the Space could be read."""

    agents: list[AgentRow]
    space_error: str | None


@dataclass(frozen=True)
class Reply:
    """An agent's final answer to a message; ``notice`` marks an error or status line."""

    body: str
    notice: bool


@dataclass(frozen=True)
class Message:
    """One line of `salon read`."""

    ts: int
    sender: str
    body: str
    notice: bool


class OperatorClient:
    """The operator's Matrix session, from ``operator.json``."""

    def __init__(self, op: OperatorFile, session: aiohttp.ClientSession) -> None:
        self.op = op
        self.api = MatrixAPI(
            op.homeserver_url, UserId(op.user_id), op.access_token, session=session
        )

    async def room(self, alias: str) -> RoomId:
        """The room behind an alias, joined (invitations are accepted on the way)."""
        room_id, servers = await self.api.resolve_alias(RoomAlias(alias))
        if room_id not in await self.api.joined_rooms():
            await self.api.join(room_id, servers)
        return room_id

    async def encrypted(self, room_id: RoomId) -> bool:
        """Whether the room is end-to-end encrypted."""
        state = await self.api.get_state_event(room_id, "m.room.encryption")
        return bool(state and state.get("algorithm"))

    def agent_alias(self, agent: str) -> str:
        """The room alias of an agent, or a clear error naming the known agents."""
        try:
            return self.op.agent_rooms[agent]
        except KeyError:
            known = ", ".join(sorted(self.op.agent_rooms)) or "none"
            raise SalonError(f"unknown agent {agent!r} (known: {known})") from None

    async def who(self) -> WhoResult:
        """Every agent with its room and heartbeat: from the Space, else from known rooms."""
        space_error: str | None = None
        aliases: list[str] = []
        try:
            space_id = await self.room(self.op.space_alias)
            for event in await self.api.get_state(space_id):
                if event.get("type") == "m.space.child" and (event.get("content") or {}).get("via"):
                    aliases.append(str(event.get("state_key")))
        except MatrixConnectionError:
            raise
        except MatrixError as e:
            space_error = str(e)
            aliases = list(self.op.agent_rooms.values())
        rows = [row for ref in aliases if (row := await self._agent_row(ref)) is not None]
        return WhoResult(sorted(rows, key=lambda r: r.agent), space_error)

    async def _agent_row(self, room_ref: str) -> AgentRow | None:
        try:
            room_id = await self.room(room_ref) if room_ref.startswith("#") else RoomId(room_ref)
            if room_id not in await self.api.joined_rooms():
                await self.api.join(room_id)
            state = await self.api.get_state(room_id)
        except MatrixError:
            return None
        alias = next(
            (
                str((e.get("content") or {}).get("alias"))
                for e in state
                if e.get("type") == "m.room.canonical_alias"
            ),
            room_ref,
        )
        session = next((e for e in state if e.get("type") == SESSION_STATE), None)
        until = (session.get("content") or {}).get("expires_ts") if session else None
        for event in state:
            if event.get("type") == AGENT_STATE:
                beat = parse_state(event.get("content"))
                return AgentRow(
                    agent=beat.agent if beat and beat.agent else str(event.get("state_key")),
                    user_id=str(event.get("state_key")),
                    alias=alias,
                    status=effective_status(beat),
                    last_beat_ms=beat.heartbeat_ts if beat else None,
                    temporary_until_ms=until if isinstance(until, int) else None,
                )
        return None  # not an agent room (the lobby)

    async def send(
        self, alias: str, text: str, *, wait_s: float | None
    ) -> tuple[str, Reply | None]:
        """Post ``text``; with ``wait_s``, wait that long for the final reply and return it."""
        room_id = await self.room(alias)
        if await self.encrypted(room_id):
            raise EncryptedRoom(alias)
        room_filter = json.dumps(
            {
                "presence": {"types": []},
                "account_data": {"types": []},
                "room": {"rooms": [room_id], "timeline": {"limit": 50}, "state": {"types": []}},
            }
        )
        since = (await self.api.sync(None, timeout_ms=0, filter_id=room_filter)).get("next_batch")
        event_id = await self.api.send_event(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": text},
            txn_id=f"salon-cli.{uuid.uuid4().hex}",
        )
        if wait_s is None:
            return event_id, None
        deadline = time.monotonic() + wait_s
        while (remaining := deadline - time.monotonic()) > 0:
            data = await self.api.sync(
                since, timeout_ms=int(min(remaining, 10) * 1000), filter_id=room_filter
            )
            since = data.get("next_batch", since)
            timeline = (((data.get("rooms") or {}).get("join") or {}).get(room_id) or {}).get(
                "timeline"
            ) or {}
            for event in timeline.get("events") or []:
                reply = _final_reply(event, event_id)
                if reply is not None:
                    return event_id, reply
        raise ReplyTimeout(f"no reply within {wait_s:g} s")

    async def read(
        self, alias: str, limit: int, *, scan_limit: int = READ_SCAN_LIMIT
    ) -> list[Message]:
        """The last ``limit`` messages, oldest first, each in its newest (edited) version.

        Pages back until ``limit`` messages are found, the room's start is
        reached, or ``scan_limit`` events were looked at: edits, reactions and
        state events take no place in the count.
        """
        room_id = await self.room(alias)
        # Newest first, as /messages?dir=b returns them: the first edit seen is the newest.
        edits: dict[str, tuple[str, dict[str, Any]]] = {}
        found: list[dict[str, Any]] = []
        page_size = min(1000, max(50, limit * 2))
        token: str | None = None
        scanned = 0
        while len(found) < limit and scanned < scan_limit:
            page = await self.api.messages(room_id, limit=page_size, since=token)
            chunk = page.get("chunk") or []
            for event in chunk:
                scanned += 1
                if event.get("type") != "m.room.message":
                    continue
                content = event.get("content") or {}
                rel = content.get("m.relates_to") or {}
                if rel.get("rel_type") == "m.replace":
                    new = content.get("m.new_content")
                    if isinstance(new, dict):
                        edits.setdefault(str(rel.get("event_id")), (str(event.get("sender")), new))
                    continue
                if "body" not in content:
                    continue  # redacted
                found.append(event)
                if len(found) == limit:
                    break
            end = page.get("end")
            if not chunk or not end or end == token:
                break
            token = str(end)
        result = []
        for event in reversed(found):
            content = event.get("content") or {}
            edit = edits.get(str(event.get("event_id")))
            if edit is not None and edit[0] == event.get("sender"):  # only its author edits
                content = edit[1]
            result.append(
                Message(
                    ts=int(event.get("origin_server_ts") or 0),
                    sender=str(event.get("sender")),
                    body=str(content.get("body", "")),
                    notice=content.get("msgtype") == "m.notice",
                )
            )
        return result


def _final_reply(event: dict[str, Any], to_event: str) -> Reply | None:
    """``event`` as a Reply if it is the final reply (or final edit) to ``to_event``."""
    content = event.get("content") or {}
    new = content.get("m.new_content")
    shown = new if isinstance(new, dict) else content
    turn = shown.get(TURN_KEY) or {}
    if turn.get("event_id") != to_event or not turn.get("final"):
        return None
    return Reply(str(shown.get("body", "")), shown.get("msgtype") == "m.notice")


async def with_operator(op: OperatorFile, action: Any) -> Any:
    """Run ``action(client)`` with a fresh HTTP session.

    Raises:
        HomeserverUnreachable: the homeserver does not answer (not running?).
    """
    async with aiohttp.ClientSession(timeout=SESSION_TIMEOUT) as session:
        try:
            return await action(OperatorClient(op, session))
        except MatrixConnectionError as e:
            raise HomeserverUnreachable(op.homeserver_url, e) from e


def run(coro: Any) -> Any:
    """Run a coroutine from synchronous CLI code."""
    return asyncio.run(coro)
