"""The dispatcher of `!` commands: finds the asked one in the table and runs it.

The router user answers, in the room it was asked in. The commands themselves live
in the modules imported below, each registering into :data:`COMMANDS`.
"""

from __future__ import annotations

import structlog

from salon.commands import (  # noqa: F401 - they register
    agents,
    approvals,
    basics,
    chat_commands,
    sessions,
)
from salon.commands.context import Asked, Reply, Services
from salon.commands.registry import COMMANDS
from salon.matrix.events import InboundEvent

__all__ = ["COMMANDS", "Asked", "CommandHandlers", "Reply"]

log = structlog.get_logger("salon.commands")


class CommandHandlers(Services):
    """Answers `!` commands (and the number a pending `!load` waits for)."""

    async def handle(self, asked: Asked) -> None:
        """Run one command and answer it."""
        typed = asked.command.name
        spec = COMMANDS.find(typed)
        if spec is None:
            await asked.reply(asked.t("unknown_command", command=typed))
            return
        if spec.admin_only and not self.is_admin(asked.event.sender):
            log.info("command.refused", command=spec.name, sender=asked.event.sender)
            await asked.reply(asked.t("command_admin_only", command=spec.name))
            return
        await spec.handler(self, asked)

    async def answer_pending(self, asked_event: InboundEvent, reply: Reply, locale: str) -> bool:
        """Treat a bare number as the answer to a pending `!load`; True if it was one."""
        return await sessions.answer_load(self, asked_event, reply, locale)
