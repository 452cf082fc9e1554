"""`!help` and `!lang`: what Salon understands, and in which language it answers."""

from __future__ import annotations

from salon import responses
from salon.commands.context import Asked, Services
from salon.commands.registry import COMMANDS, HelpSection, command


@command("help", help="help_help", section=HelpSection.GENERAL)
async def show_help(_: Services, asked: Asked) -> None:
    await asked.reply(COMMANDS.render_help(asked.locale))


@command("lang", help="help_lang", args="help_args_lang", section=HelpSection.SETTINGS)
async def set_language(s: Services, asked: Asked) -> None:
    locale = asked.command.args.strip().lower()
    if locale not in responses.CATALOGUE:
        await asked.reply(asked.t("lang_unknown", locale=locale[:10]))
        return
    await s.store.users.set_locale(asked.event.sender, locale)
    await asked.reply(responses.text("lang_set", locale, locale=locale))
