"""Request bodies: a JSON object's fields validated, ``invalid_request`` naming the culprit.

Shared by the admin routes (:mod:`salon.api.admin`) and the OpenAI-compatible
request parsing (:mod:`salon.api.openai_request`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from salon.api.server import ApiError

MAX_TIMEOUT_S = 3600.0

JSON = dict[str, Any]


def invalid(detail: str) -> ApiError:
    """An ``invalid_request`` error whose ``detail`` names the field and what is wrong."""
    return ApiError("invalid_request", detail=detail)


async def json_body(request: web.Request, fields: set[str]) -> JSON:
    """The body as a JSON object with only ``fields`` (400 naming the culprit otherwise)."""
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        raise invalid("the body must be a JSON object") from None
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
