"""User ``!commands``: parsing (pure) and, alongside, their handling."""

from salon.commands.parser import (
    MAX_ARGS_CHARS,
    AgentChoice,
    ChoiceError,
    Command,
    CommandName,
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
    "CommandName",
    "clean_text",
    "parse_agent_choice",
    "parse_command",
    "parse_index",
    "parse_name",
    "strip_reply_fallback",
]
