"""The table of `!` commands.

Each handler registers itself beside its definition with :func:`command`; the
dispatcher (:mod:`salon.commands.handlers`) looks typed names up here and `!help`
renders the table. Help texts are catalogue keys (:mod:`salon.responses`), so
every command is explained in every language (a test holds each one to that).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from salon import responses
from salon.commands.context import Asked, Services
from salon.commands.parser import MAX_NAME_CHARS

Handler = Callable[[Services, Asked], Awaitable[None]]

# Letters, as the parser reads them; shorter than the name it keeps, so a longer
# typed name (cut to MAX_NAME_CHARS) never matches a command.
_NAME_RE = re.compile(rf"[a-z]{{1,{MAX_NAME_CHARS - 1}}}")


class HelpSection(IntEnum):
    """Where a command is listed in `!help`: by section, then as registered."""

    GENERAL = 0
    AGENTS = 1
    CHATS = 2
    SESSIONS = 3
    ROUTING = 4
    SETTINGS = 5


@dataclass(frozen=True)
class Usage:
    """One line of `!help`: ``!name [args] — help``, both catalogue keys."""

    help: str
    args: str | None = None


@dataclass(frozen=True)
class CommandSpec:
    """A registered command."""

    name: str
    handler: Handler
    usages: tuple[Usage, ...]
    section: HelpSection
    admin_only: bool = False
    aliases: tuple[str, ...] = ()

    def help_lines(self, locale: str) -> list[str]:
        """This command's lines of `!help` in ``locale``."""
        lines = []
        for usage in self.usages:
            args = f" {responses.text(usage.args, locale)}" if usage.args else ""
            lines.append(f"!{self.name}{args} — {responses.text(usage.help, locale)}")
        return lines


class Registry:
    """Commands by name and alias, listed in `!help` order."""

    def __init__(self) -> None:
        self._specs: list[CommandSpec] = []
        self._by_name: dict[str, CommandSpec] = {}

    def command(
        self,
        name: str,
        *,
        help: str,
        section: HelpSection,
        args: str | None = None,
        also: Iterable[Usage] = (),
        admin_only: bool = False,
        aliases: Iterable[str] = (),
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler as ``!name`` (and ``!alias``).

        ``help`` and ``args`` are catalogue keys for its `!help` line; ``also`` adds
        lines for other ways to call it. ``admin_only`` refuses non-admins.
        """

        def register(handler: Handler) -> Handler:
            spec = CommandSpec(
                name,
                handler,
                (Usage(help, args), *also),
                section,
                admin_only=admin_only,
                aliases=tuple(aliases),
            )
            self.add(spec)
            return handler

        return register

    def add(self, spec: CommandSpec) -> None:
        """Add ``spec``; a name or alias taken twice, or one no one can type, is an error."""
        for name in (spec.name, *spec.aliases):
            if not _NAME_RE.fullmatch(name):
                raise ValueError(f"!{name}: a command name is 1-{MAX_NAME_CHARS - 1} a-z letters")
            if name in self._by_name:
                raise ValueError(f"!{name} is registered twice")
        self._specs.append(spec)
        self._by_name.update(dict.fromkeys((spec.name, *spec.aliases), spec))

    def find(self, name: str) -> CommandSpec | None:
        """The command typed as ``!name`` (a name or an alias), if there is one."""
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(sorted(self._specs, key=lambda spec: spec.section))  # stable sort

    def __len__(self) -> int:
        return len(self._specs)

    def render_help(self, locale: str) -> str:
        """The `!help` answer in ``locale``."""
        lines = [responses.text("help_header", locale)]
        for spec in self:
            lines.extend(spec.help_lines(locale))
        return "\n".join(lines)


COMMANDS = Registry()
"""Salon's `!` commands; :mod:`salon.commands.handlers` loads the modules that fill it."""

command = COMMANDS.command
