"""A calculator agent: safe arithmetic, found in a sentence or typed on its own.

Shows the smallest useful ``python`` backend: deterministic, offline, one
answer per message. ``what is 6*7?`` → ``6*7 = 42``.

Expressions are parsed with :mod:`ast` and evaluated by walking the tree, never
with ``eval``: numbers, ``+ - * / // % **`` (``^``, ``×``, ``÷`` and the words
``plus``, ``minus``, ``times``, ``divided by`` are read as such), parentheses,
unary minus, the functions ``sqrt``, ``abs``, ``round``, ``floor``, ``ceil`` and
the constants ``pi`` and ``e``. Names, attributes, strings, comparisons and
everything else are refused with a short reason. Sizes are capped before any
work is done (input length, tree size, integer bits, exponents), so
``2**99999999`` is refused at once instead of tying up the process.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from salon.agents.backend import TurnRequest
from salon.demo.common import nothing_for_me, strip_mentions

MAX_INPUT_CHARS = 500
MAX_NODES = 200
MAX_INT_BITS = 10_000  # about 3000 decimal digits
MAX_ROUND_DIGITS = 100

Number = int | float

HELP = "I do arithmetic: try `2 * (3 + 4)`, `sqrt(2)`, `10 // 3` or `what is 6*7?`"


class CalcError(ValueError):
    """An expression that cannot (or may not) be computed; the message says why."""


def _parse(source: str) -> ast.Expression:
    """``ast.parse`` without its SyntaxWarnings: a person's text (`1st`) is no code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return ast.parse(source, mode="eval")


_BINARY: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
ALLOWED = "numbers, + - * / // % ** (or ^), parentheses and " + ", ".join(
    [*_FUNCTIONS, *_CONSTANTS]
)


def _too_large() -> CalcError:
    return CalcError("the result would be too large")


def _check_int(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_large()
    if isinstance(value, float) and math.isinf(value):
        raise _too_large()
    return value


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        # |base ** exponent| has about bit_length(base) * exponent bits: refuse before computing.
        if abs(base) > 1 and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise _too_large()
        return base**exponent
    try:
        result = float(base) ** float(exponent)
    except OverflowError:
        raise _too_large() from None
    except ZeroDivisionError:
        raise CalcError("zero cannot be raised to a negative power") from None
    if isinstance(result, complex):
        raise CalcError("the result is not a real number")
    return result


def _binary(op: type[ast.operator], left: Number, right: Number) -> Number:
    if op is ast.Pow:
        return _check_int(_power(left, right))
    if (
        op is ast.Mult
        and isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1
    ):
        raise _too_large()
    try:
        if op is ast.Add:
            result = left + right
        elif op is ast.Sub:
            result = left - right
        elif op is ast.Mult:
            result = left * right
        elif op is ast.Div:
            result = left / right
        elif op is ast.FloorDiv:
            result = left // right
        else:
            result = left % right
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except OverflowError:
        raise _too_large() from None
    return _check_int(result)


def _call(node: ast.Call) -> Number:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in _FUNCTIONS:
        what = name or ast.unparse(node.func)
        raise CalcError(f"{what!r} is not allowed; only {ALLOWED}")
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise CalcError(f"{name}() takes plain numbers only")
    args = [_eval(a) for a in node.args]
    wanted = (1, 2) if name == "round" else (1,)
    if len(args) not in wanted:
        raise CalcError(f"{name}() takes {' or '.join(map(str, wanted))} argument(s)")
    if (
        name == "round"
        and len(args) == 2
        and (not isinstance(args[1], int) or abs(args[1]) > MAX_ROUND_DIGITS)
    ):
        raise CalcError(f"round()'s digits must be a whole number up to {MAX_ROUND_DIGITS}")
    if name == "sqrt" and args[0] < 0:
        raise CalcError("the square root of a negative number is not a real number")
    try:
        return _check_int(_FUNCTIONS[name](*args))
    except (OverflowError, ValueError) as exc:
        raise CalcError(f"{name}() cannot take that: {exc}") from None


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalcError(f"{node.value!r} is not a number")
        return _check_int(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(type(node.op), _eval(node.left), _eval(node.right))
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalcError(f"{node.id!r} is not allowed; only {ALLOWED}")
    raise CalcError(f"`{_shown(ast.unparse(node), 30)}` is not allowed; only {ALLOWED}")


def normalise(text: str) -> str:
    """Common ways to write arithmetic, as Python operators (``2^10`` → ``2**10``)."""
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-").replace("^", "**")
    text = re.sub(r"\bdivided\s+by\b", "/", text, flags=re.IGNORECASE)
    for word, op in (("plus", "+"), ("minus", "-"), ("times", "*")):
        text = re.sub(rf"\b{word}\b", op, text, flags=re.IGNORECASE)
    return text


def evaluate(expression: str) -> Number:
    """The value of ``expression``; CalcError saying why it cannot be had."""
    source = normalise(expression).strip()
    if not source:
        raise CalcError("there is nothing to compute")
    if len(source) > MAX_INPUT_CHARS:
        raise CalcError(f"the expression is longer than {MAX_INPUT_CHARS} characters")
    try:
        tree = _parse(source)
    except (SyntaxError, RecursionError, MemoryError):
        raise CalcError("it is not a complete arithmetic expression") from None
    except ValueError as exc:  # e.g. a null byte
        raise CalcError(str(exc)) from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalcError(f"the expression has more than {MAX_NODES} parts")
    return _eval(tree)


MAX_SHOWN_DIGITS = 40


def format_number(value: Number) -> str:
    """``42``, ``0.3``, ``1.41421356237``: integers exact (very long ones shortened, with
    their number of digits), floats to 12 significant digits."""
    if isinstance(value, int):
        digits = str(abs(value))
        if len(digits) <= MAX_SHOWN_DIGITS:
            return str(value)
        sign = "-" if value < 0 else ""
        return f"{sign}{digits[0]}.{digits[1:12]}e+{len(digits) - 1} ({len(digits)} digits)"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".12g")


# Candidate expressions inside a sentence: runs of digits, operators, parentheses,
# allowed names and the commas of round(x, n).
_NAMES = "|".join([*_FUNCTIONS, *_CONSTANTS])
_WORDS = r"plus|minus|times|divided\s+by"
_RUN = re.compile(
    rf"(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+|[-+*/%^×÷−(),\s]|\b(?:{_NAMES}|{_WORDS})\b)+",
    re.IGNORECASE,
)
# A binary operator between two operands, or a call of an allowed function.
_OPERATOR = re.compile(
    rf"[\w).]\s*(?:\*\*|//|[-+*/%])\s*[-+(\w.]|\b(?:{'|'.join(_FUNCTIONS)})\s*\("
)
_LEAD_IN = re.compile(
    r"^(?:please\s+)?(?:calculate|compute|evaluate|what\s+is|what's|how\s+much\s+is)\b[\s:]*",
    re.IGNORECASE,
)


def _run_candidates(text: str) -> list[str]:
    """Arithmetic-looking runs inside a sentence (an operator between numbers), longest first."""
    runs = []
    for match in _RUN.finditer(text):
        run = match.group().strip().strip(",").strip()
        run = re.sub(r"^[+*/%^×÷\s]+", "", run)  # a binary operator cannot start an expression
        if re.search(r"\d", run) and _OPERATOR.search(normalise(run)):
            runs.append(run)
    return sorted(dict.fromkeys(runs), key=len, reverse=True)


_CODE_LIKE = (ast.Constant, ast.Call, ast.BinOp, ast.Attribute, ast.Subscript, ast.Lambda)


def _meant_as_arithmetic(candidate: str) -> bool:
    """Whether a whole message was typed as an expression rather than as a sentence."""
    source = normalise(candidate)
    words = set(re.findall(r"[A-Za-z_]\w*", source)) - {*_FUNCTIONS, *_CONSTANTS}
    if len(source) > MAX_INPUT_CHARS:  # not parsed: evaluate() will refuse it anyway
        return not words and bool(re.search(r"\d", source))
    try:
        tree = _parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # `2 +`: nothing but numbers, operators and allowed names, yet incomplete.
        return not words and bool(re.search(r"\d", source)) and bool(re.search(r"[-+*/%]", source))
    # It parses. Bare words that are not allowed names make it a sentence (`time in UTC-5`,
    # `hello`); a call (`__import__('os')`) or an attribute (`().__class__`) is code, refused.
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in _CONSTANTS and id(node) not in called:
            return False
    return any(isinstance(n, _CODE_LIKE) for n in ast.walk(tree))


def _whole(text: str) -> str:
    """The message as an expression: no leading mentions, ``what is``, trailing ``?``."""
    return _LEAD_IN.sub("", strip_mentions(text)).strip().rstrip("?!.=").strip()


def looks_like_arithmetic(text: str) -> bool:
    """Whether the calculator would try to compute something in ``text``."""
    whole = _whole(text)
    return (bool(whole) and _meant_as_arithmetic(whole)) or bool(_run_candidates(text))


def answer(text: str) -> str:
    """The calculator's reply to a message (never raises).

    A message typed as an expression (``2 * (3 + 4)``, ``what is 6*7?``) gets its
    value or the reason it has none. In a sentence (``@Desk what is 6*7 and the
    time in Tokyo?``) the arithmetic found inside is computed: the longest run
    that computes, else the first error. Nothing that looks like arithmetic: a
    "not for me" hint.
    """
    whole = _whole(text)
    candidates = [whole] if whole and _meant_as_arithmetic(whole) else _run_candidates(text)
    first_error: tuple[str, CalcError] | None = None
    for candidate in candidates:
        try:
            value = evaluate(candidate)
        except CalcError as exc:
            first_error = first_error or (candidate, exc)
            continue
        return f"{_shown(candidate)} = {format_number(value)}"
    if first_error is not None:
        failed, error = first_error
        return f"I cannot compute `{_shown(failed)}`: {error}."
    return nothing_for_me(HELP)


def _shown(expression: str, limit: int = 60) -> str:
    shown = " ".join(expression.split())
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


class Calculator:
    """The ``python`` backend (``entry: salon.demo.calculator:Calculator``); no options."""

    def __init__(self, agent_id: str, options: Mapping[str, Any]) -> None:
        self.agent_id = agent_id

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """One reply: the result, why it cannot be computed, or a hint."""
        yield answer(request.text)
