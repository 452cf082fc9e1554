"""Private chats (`!new`) inside each person's own Space.

The router user makes the room, links it into the Space and leaves it to the
person and the agent: every member of a room costs the homeserver work on each
reply there (see :mod:`salon.turns.voices`). The chat's agent renames it and
answers commands in it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import structlog

from salon import responses
from salon.ids import RoomId, UserId, server_of_user
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import room_encryption_state
from salon.store import Store
from salon.store.records import RoomKind

log = structlog.get_logger("salon.commands.chats")


@dataclass(frozen=True)
class NewChat:
    """A chat room just created for a person."""

    room_id: RoomId
    name: str

    @property
    def link(self) -> str:
        """A matrix.to link to the room."""
        return f"https://matrix.to/#/{self.room_id}"


# State events that mark a room Salon made, so a re-run after a crash finds it.
CHAT_MARKER = "com.salon.chat"  # in a `!new` chat: the command event that asked for it
SPACE_MARKER = "com.salon.space"  # in a personal Space: whose it is
_PENDING = "pending"


class Chats:
    """Creates, names and archives `!new` chats.

    Creating is idempotent across a crash: the intent is stored before the room is
    made and the room carries a marker state event, so a command handled again
    finishes the room it started instead of making a second one.
    """

    def __init__(self, store: Store, router: MatrixAPI, *, encrypted: bool = False) -> None:
        self.store = store
        self.router = router
        self.encrypted = encrypted  # chats are created end-to-end encrypted
        self.server = server_of_user(router.user_id)

    async def personal_space(self, user_id: str, locale: str) -> RoomId:
        """The person's own Space, created on first use and shown in their sidebar."""
        user = await self.store.users.get(user_id)
        if user.space_id:
            return RoomId(user.space_id)
        key, marker = f"space_intent:{user_id}", {"v": 1, "owner": user_id}
        space_id = None
        if await self.store.kv.get(key):  # a previous attempt may have made it already
            space_id = await self._find_marked(SPACE_MARKER, marker)
        if space_id is None:
            await self.store.kv.set(key, _PENDING)
            space_id = await self.router.create_room(
                name=responses.text("space_name_personal", locale, user=user_id),
                invite=[UserId(user_id)],
                initial_state=[_state(SPACE_MARKER, marker)],
                creation_content={"type": "m.space"},
                power_level_override={"users": {user_id: 50}, "events_default": 100},
            )
            log.info("chat.space_created", user=user_id, space_id=space_id)
        await self.store.users.set_space(user_id, space_id)
        await self.store.rooms.upsert(space_id, RoomKind.SPACE, owner=user_id)
        return space_id

    async def create(
        self,
        user_id: str,
        agent_id: str,
        agent_api: MatrixAPI,
        name: str | None,
        locale: str,
        *,
        command_event: str,
    ) -> NewChat:
        """A private room for the person and the agent, bound to the agent, in their Space.

        At most one room per ``command_event``, however often the command is handled.
        """
        agent_user = agent_api.user_id
        space_id = await self.personal_space(user_id, locale)
        key, marker = f"chat_intent:{command_event}", {"v": 1, "command_event": command_event}
        raw = await self.store.kv.get(key)
        intent = json.loads(raw) if raw else None
        if intent is None:
            if not name:
                number = await self.store.kv.next(f"chat_seq:{user_id}")
                name = responses.text("chat_default_name", locale, n=number)
            intent = {"name": name, "room_id": None}
            await self.store.kv.set(key, json.dumps(intent))
        elif intent["room_id"] is None:
            intent["room_id"] = await self._find_marked(CHAT_MARKER, marker)
        name = str(intent["name"])
        room_id = intent["room_id"]
        if room_id is None:
            room_id = await self.router.create_room(
                name=name,
                invite=[UserId(user_id), UserId(agent_user)],
                initial_state=[
                    _state(CHAT_MARKER, marker),
                    *([room_encryption_state()] if self.encrypted else []),
                ],
                power_level_override={"users": {user_id: 50, agent_user: 50}},
                preset="private_chat",
            )
            log.info("chat.created", user=user_id, agent=agent_id, room_id=room_id)
        await self.store.kv.set(key, json.dumps({"name": name, "room_id": room_id}))
        # Bind before anything else can arrive in the room.
        await self.store.rooms.upsert(
            room_id, RoomKind.CHAT, agent_id=agent_id, owner=user_id, name=name
        )
        via = [self.server]
        await self.router.send_state(space_id, "m.space.child", {"via": via}, room_id)
        if room_id in await self.router.joined_rooms():
            # Not after a crash past the leave below: the parent was set by then.
            await self.router.send_state(
                room_id, "m.space.parent", {"via": via, "canonical": True}, space_id
            )
            # The agent joins before the router leaves: a room nobody has joined is
            # gone for good. Last, once the room is recorded (a re-run finds it).
            await agent_api.join(RoomId(room_id))
            await self.router.leave(RoomId(room_id))
        return NewChat(RoomId(room_id), name)

    async def _find_marked(self, marker_type: str, marker: dict[str, Any]) -> RoomId | None:
        """A room the router made with ``marker`` but never recorded (the crash window)."""
        for room_id in await self.router.joined_rooms():
            if await self.store.rooms.get(room_id) is not None:
                continue  # recorded rooms are not the lost one
            state = await self.router.get_state_event(room_id, marker_type)
            if state is not None and all(state.get(k) == v for k, v in marker.items()):
                log.info("chat.recovered", room_id=room_id, marker=marker_type)
                return room_id
        return None

    async def rename(self, room_id: str, name: str, agent_api: MatrixAPI | None) -> None:
        """Rename a chat (its Matrix name, by its agent, and the stored one)."""
        api = agent_api or self.router  # a chat whose agent is gone: best effort
        await api.send_state(RoomId(room_id), "m.room.name", {"name": name})
        await self.store.rooms.rename(room_id, name)

    async def archive(self, room_id: str, agent_api: MatrixAPI | None) -> None:
        """Mark a chat archived (it stops routing) and have Salon's users leave it."""
        await self.store.rooms.archive(room_id)
        leaving = [agent_api] if agent_api is not None else []
        if room_id in await self.router.joined_rooms():  # chats made by older versions
            leaving.append(self.router)
        for api in leaving:
            try:
                await api.leave(RoomId(room_id))
            except Exception as e:  # leaving is best effort; the archive flag decides
                log.warning("chat.leave_failed", room_id=room_id, error=str(e))


def _state(event_type: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "state_key": "", "content": content}
