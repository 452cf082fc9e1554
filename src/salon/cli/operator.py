"""What the operator does from the terminal: list agents, send, read."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from salon._exceptions import MatrixError, SalonError
from salon.cli.operator_file import OperatorFile
from salon.coordination.heartbeat import AGENT_STATE, AgentStatus, effective_status, parse_state
from salon.ids import RoomAlias, RoomId, UserId
from salon.matrix.api import MatrixAPI

TURN_KEY = "com.salon.turn"


class ReplyTimeout(SalonError):
    """No reply arrived in time."""


@dataclass(frozen=True)
class AgentRow:
    """One line of `salon who`."""

    agent: str
    user_id: str
    alias: str
    status: AgentStatus
    last_beat_ms: int | None


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
        for event in state:
            if event.get("type") == AGENT_STATE:
                beat = parse_state(event.get("content"))
                return AgentRow(
                    agent=beat.agent if beat and beat.agent else str(event.get("state_key")),
                    user_id=str(event.get("state_key")),
                    alias=alias,
                    status=effective_status(beat),
                    last_beat_ms=beat.heartbeat_ts if beat else None,
                )
        return None  # not an agent room (the lobby)

    async def send(
        self, alias: str, text: str, *, wait_s: float | None
    ) -> tuple[str, Reply | None]:
        """Post ``text``; with ``wait_s``, wait that long for the final reply and return it."""
        room_id = await self.room(alias)
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

    async def read(self, alias: str, limit: int) -> list[Message]:
        """The last ``limit`` messages, oldest first, edits applied."""
        room_id = await self.room(alias)
        page = await self.api.messages(room_id, limit=limit * 3)
        events = [e for e in page.get("chunk") or [] if e.get("type") == "m.room.message"]
        edits: dict[str, dict[str, Any]] = {}
        originals = []
        for event in reversed(events):
            content = event.get("content") or {}
            rel = content.get("m.relates_to") or {}
            new = content.get("m.new_content")
            if rel.get("rel_type") == "m.replace" and isinstance(new, dict):
                edits[str(rel.get("event_id"))] = new
            else:
                originals.append(event)
        result = []
        for event in originals[-limit:]:
            content = edits.get(event.get("event_id"), event.get("content") or {})
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
    """Run ``action(client)`` with a fresh HTTP session."""
    async with aiohttp.ClientSession() as session:
        return await action(OperatorClient(op, session))


def run(coro: Any) -> Any:
    """Run a coroutine from synchronous CLI code."""
    return asyncio.run(coro)
