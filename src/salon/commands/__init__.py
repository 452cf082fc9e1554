"""User ``!commands``: parsing (pure, here), the table of commands and their handlers."""

from salon.commands.parser import (
    MAX_ARGS_CHARS,
    AgentChoice,
    ChoiceError,
    Command,
    clean_text,
    parse_agent_choice,
    parse_command,
    parse_index,
    parse_name,
    strip_reply_fallback,
)

__all__ = [
    "MAX_ARGS_CHARS",
    "AgentChoice",
    "ChoiceError",
    "Command",
    "clean_text",
    "parse_agent_choice",
    "parse_command",
    "parse_index",
    "parse_name",
    "strip_reply_fallback",
]
