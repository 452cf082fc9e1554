"""Commands about a person's `!new` chats: make, list, rename, archive."""

from __future__ import annotations

import structlog

from salon._exceptions import is_transient
from salon.commands.context import Asked, Services
from salon.commands.parser import parse_name
from salon.commands.registry import HelpSection, command

log = structlog.get_logger("salon.commands")


@command("new", help="help_new", args="help_args_name_optional", section=HelpSection.CHATS)
async def new_chat(s: Services, asked: Asked) -> None:
    agent = s.by_id.get(asked.user.selected_agent or "")
    if agent is None:
        await asked.reply(asked.t("new_needs_agent"))
        return
    name = parse_name(asked.command.args)
    try:
        chat = await s.chats.create(
            asked.event.sender,
            agent.agent_id,
            s.agent_apis[agent.agent_id],
            name,
            asked.locale,
            command_event=asked.event.event_id,
        )
    except Exception as e:
        if is_transient(e):
            # Homeserver or store away: the inbox retries the command once it is back
            # (the reply would not get through now; `!new` is idempotent per event).
            raise
        log.warning("command.new_failed", error=str(e))  # say what failed, not silence
        await asked.reply(asked.t("new_failed", error=type(e).__name__))
        return
    await asked.reply(asked.t("new_created", name=chat.name, link=chat.link, label=agent.label))


@command("chats", help="help_chats", section=HelpSection.CHATS)
async def list_chats(s: Services, asked: Asked) -> None:
    chats = await s.store.rooms.chats_of(asked.event.sender)
    if not chats:
        await asked.reply(asked.t("chats_empty"))
        return
    lines = [asked.t("chats_header")]
    for chat in chats:
        agent = s.by_id.get(chat.agent_id or "")
        lines.append(
            asked.t(
                "chats_item",
                name=chat.name or chat.room_id,
                label=agent.label if agent else chat.agent_id,
                link=f"https://matrix.to/#/{chat.room_id}",
            )
        )
    await asked.reply("\n".join(lines))


@command("rename", help="help_rename", args="help_args_name", section=HelpSection.CHATS)
async def rename_chat(s: Services, asked: Asked) -> None:
    room = s.own_chat(asked)
    if room is None:
        await asked.reply(asked.t("rename_not_chat"))
        return
    name = parse_name(asked.command.args)
    if not name:
        await asked.reply(asked.t("rename_needs_name"))
        return
    await s.chats.rename(room.room_id, name, s.api_of(room.agent_id))
    await asked.reply(asked.t("renamed", name=name))


@command("archive", help="help_archive", section=HelpSection.CHATS)
async def archive_chat(s: Services, asked: Asked) -> None:
    room = s.own_chat(asked)
    if room is None:
        await asked.reply(asked.t("archive_not_chat"))
        return
    await asked.reply(asked.t("archived", name=room.name or room.room_id))
    await s.chats.archive(room.room_id, s.api_of(room.agent_id))
