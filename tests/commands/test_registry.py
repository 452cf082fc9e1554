"""The table of `!` commands: help in every language, lookups, admin-only commands."""

from __future__ import annotations

import pytest
from tests.commands.harness import ALICE, BOB, Harness

from salon import responses
from salon.commands import handlers
from salon.commands.context import Asked, Services
from salon.commands.handlers import COMMANDS
from salon.commands.registry import CommandSpec, HelpSection, Registry

# `!help` as it was before the table (the catalogue's old `help_text`): the output
# the table renders must not change.
_HELP = {
    "en": (
        "Commands:\n"
        "!help — this list\n"
        "!agent — list the agents\n"
        "!agent <n|id> — choose your agent\n"
        "!new [name] — start a new chat with your agent\n"
        "!chats — your chats\n"
        "!rename <name> — rename this chat\n"
        "!archive — archive this chat\n"
        "!context — agent, model and size of this session\n"
        "!save [name] — save this session\n"
        "!load — restore a saved session\n"
        "!reset — clear this session\n"
        "!stop — stop the answer in progress\n"
        "!why — why the last message went where it did\n"
        "!delegate <agent> <task> — have this room's agent hand a task to another\n"
        "!approve [id] — run a call an agent asks you to approve (reply to its request)\n"
        "!deny [id] — refuse a call an agent asks you to approve\n"
        "!lang <en|ru> — change the language"
    ),
    "ru": (
        "Команды:\n"
        "!help — этот список\n"
        "!agent — список агентов\n"
        "!agent <номер|id> — выбрать агента\n"
        "!new [название] — новый чат с вашим агентом\n"
        "!chats — ваши чаты\n"
        "!rename <название> — переименовать этот чат\n"
        "!archive — архивировать этот чат\n"
        "!context — агент, модель и объём этой сессии\n"
        "!save [название] — сохранить эту сессию\n"
        "!load — восстановить сохранённую сессию\n"
        "!reset — очистить эту сессию\n"
        "!stop — остановить текущий ответ\n"
        "!why — почему последнее сообщение ушло именно туда\n"
        "!delegate <агент> <задача> — агент этой комнаты передаст задачу другому\n"
        "!approve [id] — разрешить вызов, о котором спрашивает агент (ответом на запрос)\n"
        "!deny [id] — запретить вызов, о котором спрашивает агент\n"
        "!lang <en|ru> — сменить язык"
    ),
}


@pytest.mark.parametrize("locale", sorted(_HELP))
def test_help_renders_as_before(locale: str) -> None:
    assert COMMANDS.render_help(locale) == _HELP[locale]


@pytest.mark.parametrize("spec", list(COMMANDS), ids=lambda spec: spec.name)
def test_every_command_is_explained_in_every_language(spec: CommandSpec) -> None:
    keys = [key for usage in spec.usages for key in (usage.help, usage.args) if key]
    assert keys, f"!{spec.name} has no help"
    for key in keys:
        for locale in ("en", "ru"):
            text = responses.CATALOGUE[locale].get(key, "")
            assert text.strip(), f"!{spec.name}: no {locale} text for {key!r}"


def test_names_and_aliases_are_unique_and_typeable() -> None:
    table = Registry()

    async def noop(_: Services, asked: Asked) -> None:
        await asked.reply("noop")

    table.command("noop", help="help_help", section=HelpSection.GENERAL, aliases=["nop"])(noop)
    found = table.find("nop")
    assert found is not None and found.name == "noop" and found is table.find("noop")
    for taken in ("noop", "nop"):
        with pytest.raises(ValueError, match="twice"):
            table.command(taken, help="help_help", section=HelpSection.GENERAL)(noop)
    with pytest.raises(ValueError, match="a-z"):
        table.command("No-op", help="help_help", section=HelpSection.GENERAL)(noop)
    assert [spec.name for spec in table] == ["noop"]  # aliases are not listed twice


async def test_unknown_command_gets_the_unknown_answer(h: Harness) -> None:
    room = await h.shared_room()
    answer = responses.text("unknown_command", "en", command="frobnicate")
    assert await h.ask(room, "!frobnicate now") == [answer]
    assert await h.ask(room, "!agentx") == [responses.text("unknown_command", command="agentx")]


async def test_admin_only_commands_answer_admins_only(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = Registry()

    @table.command("purge", help="help_help", section=HelpSection.GENERAL, admin_only=True)
    async def purge(_: Services, asked: Asked) -> None:
        await asked.reply("purged")

    monkeypatch.setattr(handlers, "COMMANDS", table)
    h.handlers.is_admin = lambda user: user == BOB
    room = await h.shared_room()
    refused = responses.text("command_admin_only", "en", command="purge")
    assert await h.ask(room, "!purge", sender=ALICE) == [refused]
    assert await h.ask(room, "!purge", sender=BOB) == ["purged"]
