"""Private chats (`!new`) inside each person's own Space, done by the router user."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from salon import responses
from salon.ids import RoomId, UserId, server_of_user
from salon.matrix.api import MatrixAPI
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


class Chats:
    """Creates, names and archives `!new` chats."""

    def __init__(self, store: Store, router: MatrixAPI) -> None:
        self.store = store
        self.router = router
        self.server = server_of_user(router.user_id)

    async def personal_space(self, user_id: str, locale: str) -> RoomId:
        """The person's own Space, created on first use and shown in their sidebar."""
        user = await self.store.users.get(user_id)
        if user.space_id:
            return RoomId(user.space_id)
        space_id = await self.router.create_room(
            name=responses.text("space_name_personal", locale, user=user_id),
            invite=[UserId(user_id)],
            creation_content={"type": "m.space"},
            power_level_override={"users": {user_id: 50}, "events_default": 100},
        )
        await self.store.users.set_space(user_id, space_id)
        await self.store.rooms.upsert(space_id, RoomKind.SPACE, owner=user_id)
        log.info("chat.space_created", user=user_id, space_id=space_id)
        return space_id

    async def create(
        self, user_id: str, agent_id: str, agent_user: str, name: str | None, locale: str, *, command_event: str = ""
    ) -> NewChat:
        """A private room for the person and the agent, bound to the agent, in their Space."""
        space_id = await self.personal_space(user_id, locale)
        if not name:
            number = await self.store.kv.next(f"chat_seq:{user_id}")
            name = responses.text("chat_default_name", locale, n=number)
        room_id = await self.router.create_room(
            name=name,
            invite=[UserId(user_id), UserId(agent_user)],
            power_level_override={"users": {user_id: 50, agent_user: 50}},
            preset="private_chat",
        )
        # Bind before anything else can arrive in the room.
        await self.store.rooms.upsert(
            room_id, RoomKind.CHAT, agent_id=agent_id, owner=user_id, name=name
        )
        via = [self.server]
        await self.router.send_state(space_id, "m.space.child", {"via": via}, room_id)
        await self.router.send_state(
            room_id, "m.space.parent", {"via": via, "canonical": True}, space_id
        )
        log.info("chat.created", user=user_id, agent=agent_id, room_id=room_id)
        return NewChat(room_id, name)

    async def rename(self, room_id: str, name: str) -> None:
        """Rename a chat (its Matrix name and the stored one)."""
        await self.router.send_state(RoomId(room_id), "m.room.name", {"name": name})
        await self.store.rooms.rename(room_id, name)

    async def archive(self, room_id: str, agent_api: MatrixAPI | None) -> None:
        """Mark a chat archived (it stops routing) and have Salon's users leave it."""
        await self.store.rooms.archive(room_id)
        for api in (agent_api, self.router):
            if api is not None:
                try:
                    await api.leave(RoomId(room_id))
                except Exception as e:  # leaving is best effort; the archive flag decides
                    log.warning("chat.leave_failed", room_id=room_id, error=str(e))

CHAT_MARKER = "com.salon.chat"

