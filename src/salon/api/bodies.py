"""Request bodies: a JSON object's fields validated, ``invalid_request`` naming the culprit.

The body is read by :func:`read_json`: UTF-8 JSON with finite numbers only, nested
at most ``MAX_JSON_DEPTH`` deep (400 ``bad_json`` otherwise), so no body can
exhaust the parser's recursion. Shared by the admin routes (:mod:`salon.api.admin`)
and the OpenAI-compatible request parsing (:mod:`salon.api.openai_request`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from aiohttp import web

from salon.api.server import ApiError

MAX_TIMEOUT_S = 3600.0
# How deep a body's arrays and objects may nest (a chat request needs about 5).
MAX_JSON_DEPTH = 32
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")

JSON = dict[str, Any]


def invalid(detail: str) -> ApiError:
    """An ``invalid_request`` error whose ``detail`` names the field and what is wrong."""
    return ApiError("invalid_request", detail=detail)


class _NotFinite:
    """Where a body had NaN, Infinity or a number too large for a float."""

    def __init__(self, literal: str) -> None:
        self.literal = literal[:40]


def _number(literal: str) -> float | _NotFinite:
    value = float(literal)
    return value if math.isfinite(value) else _NotFinite(literal)


def _not_finite(value: Any) -> _NotFinite | None:
    if isinstance(value, _NotFinite):
        return value
    if isinstance(value, list):  # objects inside were checked when they were made
        return next((found for v in value if (found := _not_finite(v)) is not None), None)
    return None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object, refused (naming the field) if a value is not a finite number."""
    for key, value in pairs:
        found = _not_finite(value)
        if found is not None:
            raise ValueError(f"{key}: {found.literal} is not a finite number")
    return dict(pairs)


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest deeper than ``MAX_JSON_DEPTH`` (strings skipped),
    checked before parsing: a deep body would exhaust the parser's recursion."""
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub('""', text)):
        if bracket in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON: UTF-8, at most ``MAX_JSON_DEPTH`` deep, no NaN, Infinity or
    number too large for a float (400 ``bad_json`` otherwise, naming the field)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("bad_json", detail="it is not UTF-8") from None
    if _too_deep(text):
        raise ApiError("bad_json", detail=f"it nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(
            text, parse_constant=_NotFinite, parse_float=_number, object_pairs_hook=_object
        )
    except ValueError as e:  # JSONDecodeError too
        raise ApiError("bad_json", detail=str(e)) from None
    found = _not_finite(body)
    if found is not None:
        raise ApiError("bad_json", detail=f"{found.literal} is not a finite number")
    return body


async def read_json(request: web.Request) -> Any:
    """The request's body parsed by :func:`parse_json` (an empty body is ``None``)."""
    raw = await request.read()
    return parse_json(raw) if raw.strip() else None


async def json_body(request: web.Request, fields: set[str]) -> JSON:
    """The body as a JSON object with only ``fields`` (400 naming the culprit otherwise)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise invalid(f"{unknown[0]}: unknown field")
    return body


def text_field(body: JSON, name: str) -> str:
    """A required non-blank string."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{name}: a non-empty string is required")
    return value


def bool_field(body: JSON, name: str, default: bool) -> bool:
    """An optional boolean."""
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid(f"{name}: must be true or false")
    return value


def timeout_field(body: JSON, default: float) -> float:
    """``timeout_s``: seconds, more than 0 and at most an hour."""
    value = body.get("timeout_s", default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid("timeout_s: must be a number of seconds")
    if not 0 < value <= MAX_TIMEOUT_S:
        raise invalid(f"timeout_s: must be more than 0 and at most {MAX_TIMEOUT_S:g}")
    return float(value)


def seconds_field(body: JSON, name: str, *, required: bool, maximum: float) -> float | None:
    """A number of seconds above 0 and at most ``maximum`` (None if absent and optional)."""
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name}: a number of seconds above 0")
    if not 0 < value <= maximum:  # NaN and infinities fail it too
        raise invalid(f"{name}: a number of seconds above 0 and at most {maximum:.0f}")
    return float(value)
