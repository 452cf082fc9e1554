"""Command parsing: the grammar, agent choices, names, indexes and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salon.commands import (
    MAX_ARGS_CHARS,
    AgentChoice,
    ChoiceError,
    Command,
    parse_agent_choice,
    parse_command,
    parse_index,
    parse_name,
)
from salon.commands import parser as parser_module
from salon.commands.handlers import COMMANDS
from salon.commands.parser import MAX_NAME_CHARS, clean_text, strip_reply_fallback

_KNOWN = [spec.name for spec in COMMANDS]

AGENTS = ("assistant", "Coder", "42")


# ---------------------------------------------------------------- parse_command


@pytest.mark.parametrize("name", _KNOWN)
def test_every_known_name_parses(name: str) -> None:
    assert parse_command(f"!{name}") == Command(name, "")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!agent 2", Command("agent", "2")),
        ("  !NEW  My chat ", Command("new", "My chat")),
        ("!Agent", Command("agent", "")),
        ("!hElP", Command("help", "")),
        ("\n\t!new\tline one\nline two\r\n", Command("new", "line one line two")),
        ("!rename   a    b  ", Command("rename", "a b")),
        ("!lang\u00a0ru", Command("lang", "ru")),
    ],
)
def test_commands(body: str, expected: Command) -> None:
    assert parse_command(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "!",
        "!!",
        "!!help",
        "! agent",
        "!123",
        "!agent2",
        "!help!",
        "!агент 1",
        "hello !help",
        "help",
        "¡help",
        "！help",  # fullwidth exclamation mark
    ],
)
def test_not_commands(body: str) -> None:
    assert parse_command(body) is None


def test_a_message_without_a_bang_is_not_cleaned_character_by_character(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every message is asked whether it is a command: one without a "!" is answered
    without a look-up per character (a long message paid thousands)."""
    looked_up: list[str] = []
    monkeypatch.setattr(parser_module, "_clean_char", lambda ch: looked_up.append(ch) or ch)
    assert parse_command("an ordinary message, " * 100) is None
    assert looked_up == []
    assert parse_command("> quoted\n\n!help me") == Command("help", "me")


def test_unknown_command_keeps_the_name_and_args() -> None:
    assert parse_command("!Frobnicate the  thing") == Command("frobnicate", "the thing")


def test_unknown_command_name_is_truncated() -> None:
    command = parse_command("!" + "x" * 1000 + " arg")
    assert command is not None
    assert command.name == "x" * MAX_NAME_CHARS
    assert command.args == "arg"


def test_a_long_known_prefix_is_not_the_known_command() -> None:
    command = parse_command("!help" + "x" * 100)
    assert command is not None and COMMANDS.find(command.name) is None


def test_long_args_are_truncated() -> None:
    command = parse_command("!new " + "a" * 100_000)
    assert command is not None
    assert command.args == "a" * MAX_ARGS_CHARS


def test_truncation_does_not_leave_trailing_space() -> None:
    command = parse_command("!new " + "a" * (MAX_ARGS_CHARS - 1) + " b")
    assert command is not None
    assert command.args == "a" * (MAX_ARGS_CHARS - 1)


@pytest.mark.parametrize(
    ("body", "args"),
    [
        ("!agent 1; DROP TABLE users", "1; DROP TABLE users"),
        ("!new <script>alert(1)</script>", "<script>alert(1)</script>"),
        ("!rename ${HOME}", "${HOME}"),
        ("!rename {label} {0} %s", "{label} {0} %s"),
        ("!save ../../etc/passwd", "../../etc/passwd"),
        ("!new @room @everyone", "@room @everyone"),
        ("!new 'quoted' \"double\" `tick`", "'quoted' \"double\" `tick`"),
    ],
)
def test_injection_looking_text_is_plain_text(body: str, args: str) -> None:
    command = parse_command(body)
    assert command is not None
    assert command.args == args


def test_unicode_args_are_kept() -> None:
    command = parse_command("!new Чат 🎉 مرحبا 中文")
    assert command == Command("new", "Чат 🎉 مرحبا 中文")


def test_rtl_overrides_and_invisibles_are_dropped() -> None:
    command = parse_command("\u202e!rename \u202egnp.exe\u202c \u200bx\ufeff")
    assert command == Command("rename", "gnp.exe x")


def test_control_characters_do_not_survive() -> None:
    command = parse_command("!new a\x00b\x07c\x1bd\x7fe\x85f\x9fg")
    assert command is not None
    assert command.args == "a b c d e f g"


def test_nul_after_the_name_separates_args() -> None:
    assert parse_command("!new\x00name") == Command("new", "name")


def test_lone_surrogates_are_dropped() -> None:
    command = parse_command("!new a\ud800b")
    assert command is not None
    assert command.args == "ab"
    command.args.encode("utf-8")


# ---------------------------------------------------------------- reply fallback


def test_reply_fallback_is_stripped() -> None:
    body = "> <@alice:example.org> what agents are there?\n> second line\n\n!agent 2"
    assert parse_command(body) == Command("agent", "2")


def test_reply_fallback_with_crlf() -> None:
    body = "> <@alice:example.org> hi\r\n\r\n!help"
    assert parse_command(body) == Command("help", "")


def test_reply_fallback_before_ordinary_text() -> None:
    assert parse_command("> <@alice:example.org> !help\n\nthanks") is None


def test_quote_without_blank_line_is_not_stripped() -> None:
    assert strip_reply_fallback("> quoted\n!help") == "> quoted\n!help"
    assert parse_command("> quoted\n!help") is None


def test_only_quotes_is_unchanged() -> None:
    assert strip_reply_fallback("> a\n> b") == "> a\n> b"
    assert parse_command("> !help") is None


def test_only_the_leading_fallback_is_stripped() -> None:
    body = "> <@a:b> x\n\n!new > not a quote\n\nmore"
    assert parse_command(body) == Command("new", "> not a quote more")


# ---------------------------------------------------------------- parse_agent_choice


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("1", AgentChoice(index=1)),
        ("2", AgentChoice(index=2)),
        ("3", AgentChoice(index=3)),
        (" 2 ", AgentChoice(index=2)),
        ("02", AgentChoice(index=2)),
        ("+3", AgentChoice(index=3)),
        ("assistant", AgentChoice(agent_id="assistant")),
        ("ASSISTANT", AgentChoice(agent_id="assistant")),
        ("@assistant", AgentChoice(agent_id="assistant")),
        ("coder", AgentChoice(agent_id="Coder")),
        ("@CODER", AgentChoice(agent_id="Coder")),
        ("@42", AgentChoice(agent_id="42")),
        ("42", ChoiceError.OUT_OF_RANGE),  # digits are a position; "@42" is the id
        ("", ChoiceError.EMPTY),
        ("   ", ChoiceError.EMPTY),
        ("\u202e\u200b", ChoiceError.EMPTY),
        ("0", ChoiceError.OUT_OF_RANGE),
        ("4", ChoiceError.OUT_OF_RANGE),
        ("999", ChoiceError.OUT_OF_RANGE),
        ("-1", ChoiceError.OUT_OF_RANGE),
        ("-0", ChoiceError.OUT_OF_RANGE),
        ("+0", ChoiceError.OUT_OF_RANGE),
        ("1.5", ChoiceError.OUT_OF_RANGE),
        ("1,5", ChoiceError.OUT_OF_RANGE),
        ("9" * 10_000, ChoiceError.OUT_OF_RANGE),
        ("0" * 100 + "1", AgentChoice(index=1)),
        ("０", ChoiceError.UNKNOWN),  # fullwidth digit: a name, not a number
        ("١", ChoiceError.UNKNOWN),  # Arabic-Indic digit
        ("²", ChoiceError.UNKNOWN),
        ("@", ChoiceError.UNKNOWN),
        ("@@assistant", ChoiceError.UNKNOWN),
        ("nobody", ChoiceError.UNKNOWN),
        ("assistant coder", ChoiceError.UNKNOWN),
        ("1; DROP TABLE users", ChoiceError.UNKNOWN),
        ("1 2", ChoiceError.UNKNOWN),
        ("assist", ChoiceError.UNKNOWN),
        ("%", ChoiceError.UNKNOWN),
    ],
)
def test_agent_choice(args: str, expected: AgentChoice | ChoiceError) -> None:
    assert parse_agent_choice(args, AGENTS) == expected


def test_agent_choice_with_no_agents() -> None:
    assert parse_agent_choice("1", []) is ChoiceError.OUT_OF_RANGE
    assert parse_agent_choice("assistant", []) is ChoiceError.UNKNOWN


def test_agent_choice_from_a_parsed_command() -> None:
    for body, expected in [
        ("!agent 0", ChoiceError.OUT_OF_RANGE),
        ("!agent 999", ChoiceError.OUT_OF_RANGE),
        ("!agent -1", ChoiceError.OUT_OF_RANGE),
        ("!agent", ChoiceError.EMPTY),
        ("!AGENT Coder", AgentChoice(agent_id="Coder")),
        ("!agent 1; DROP TABLE users", ChoiceError.UNKNOWN),
    ]:
        command = parse_command(body)
        assert command is not None and command.name == "agent"
        assert parse_agent_choice(command.args, AGENTS) == expected, body


def test_an_agent_choice_sets_exactly_one_field() -> None:
    for args in ("1", "coder", "@42"):
        choice = parse_agent_choice(args, AGENTS)
        assert isinstance(choice, AgentChoice)
        assert (choice.index is None) != (choice.agent_id is None)


# ---------------------------------------------------------------- parse_name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("My chat", "My chat"),
        ("  My   chat  ", "My chat"),
        ("line\nbreak", "line break"),
        ("", None),
        ("   ", None),
        ("\x00\u202e\u200b", None),
        ("<script>", "<script>"),
        ("${HOME}", "${HOME}"),
        ("Чат про 🐍", "Чат про 🐍"),
    ],
)
def test_parse_name(args: str, expected: str | None) -> None:
    assert parse_name(args) == expected


def test_parse_name_truncates() -> None:
    assert parse_name("x" * 1000) == "x" * 80
    assert parse_name("x" * 1000, max_len=10) == "x" * 10
    assert parse_name("abc def", max_len=4) == "abc"
    assert parse_name("abc", max_len=0) is None
    assert parse_name("abc", max_len=-5) is None


# ---------------------------------------------------------------- parse_index


@pytest.mark.parametrize(
    ("args", "n", "expected"),
    [
        ("3", 3, 3),
        ("1", 3, 1),
        (" 2 ", 3, 2),
        ("+2", 3, 2),
        ("0", 3, None),
        ("4", 3, None),
        ("-1", 3, None),
        ("1", 0, None),
        ("1.0", 3, None),
        ("two", 3, None),
        ("２", 3, None),
        ("1 2", 3, None),
        ("", 3, None),
        ("9" * 10_000, 3, None),
        ("!load", 3, None),
    ],
)
def test_parse_index(args: str, n: int, expected: int | None) -> None:
    assert parse_index(args, n) == expected


# ---------------------------------------------------------------- clean_text


def test_clean_text() -> None:
    assert clean_text("  a \n\t b\u2028c\u3000d ") == "a b c d"
    assert clean_text("a\u202eb\u2066c\u200fd") == "abcd"
    assert clean_text("abc def", 5) == "abc d"
    assert clean_text("abc  def", 4) == "abc"
    # Joiners that shape emoji and scripts are kept.
    assert clean_text("👨\u200d👩\u200d👧") == "👨\u200d👩\u200d👧"


# ---------------------------------------------------------------- properties

_HOSTILE = st.text(
    alphabet=st.one_of(
        st.characters(),  # anything, surrogates and controls included
        st.sampled_from(["!", ">", " ", "\n", "\x00", "\u202e", "@", "0", "9", "-", "+"]),
    ),
    max_size=2000,
)


def _is_clean(text: str) -> bool:
    return (
        text == text.strip()
        and "  " not in text
        and not any(ch in text for ch in "\x00\n\r\t\u202e\u202d\u2066\u200b\ufeff")
        and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
    )


@given(_HOSTILE)
def test_parse_command_never_raises_and_is_bounded(body: str) -> None:
    command = parse_command(body)
    if command is not None:
        assert 1 <= len(command.name) <= MAX_NAME_CHARS
        assert command.name.isascii() and command.name.isalpha()
        assert command.name == command.name.lower()
        assert len(command.args) <= MAX_ARGS_CHARS
        assert _is_clean(command.args)


@given(st.sampled_from(_KNOWN), _HOSTILE)
def test_known_command_with_any_args(name: str, args: str) -> None:
    command = parse_command(f"!{name.upper()} {args}")
    assert command is not None
    assert command.name == name
    assert len(command.args) <= MAX_ARGS_CHARS
    assert _is_clean(command.args)


@given(_HOSTILE, st.lists(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True), max_size=5))
def test_parse_agent_choice_never_raises(args: str, agent_ids: list[str]) -> None:
    choice = parse_agent_choice(args, agent_ids)
    if isinstance(choice, AgentChoice):
        assert (choice.index is None) != (choice.agent_id is None)
        if choice.index is not None:
            assert 1 <= choice.index <= len(agent_ids)
        else:
            assert choice.agent_id in agent_ids
    else:
        assert isinstance(choice, ChoiceError)


@given(_HOSTILE, st.integers(min_value=-5, max_value=200))
def test_parse_name_never_raises_and_is_bounded(args: str, max_len: int) -> None:
    name = parse_name(args, max_len=max_len)
    if name is not None:
        assert 1 <= len(name) <= max_len
        assert _is_clean(name)


@given(_HOSTILE, st.integers(min_value=-5, max_value=50))
def test_parse_index_never_raises_and_is_in_range(args: str, n: int) -> None:
    index = parse_index(args, n)
    assert index is None or 1 <= index <= n


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=1, max_value=50))
def test_numbers_choose_by_position(k: int, n: int) -> None:
    ids = [f"agent{i}" for i in range(n)]
    expected = AgentChoice(index=k) if k <= n else ChoiceError.OUT_OF_RANGE
    assert parse_agent_choice(str(k), ids) == expected
    assert parse_index(str(k), n) == (k if k <= n else None)
