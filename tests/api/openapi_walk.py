"""Walking the OpenAPI document against a server: every operation in it answers, every
route the app has is in it, and its `security` says which routes need the token."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

METHODS = ("get", "put", "post", "delete", "patch")


def operations(doc: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every (METHOD, path template) the document describes."""
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """Every (METHOD, path template) the app routes (HEAD comes with GET)."""
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        assert path is not None, route
        found.add((route.method, str(path)))
    return found


def _fill(path: str, op: Mapping[str, Any], values: Mapping[str, str]) -> str:
    examples = {
        p["name"]: str(p.get("example", ""))
        for p in op.get("parameters", [])
        if p.get("in") == "path"
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        filled = values.get(name) or examples.get(name)
        assert filled, f"{path}: no value for {{{name}}}"
        return filled

    return re.sub(r"\{([^}]+)\}", value, path)


async def walk(
    session: aiohttp.ClientSession,
    base_url: str,
    doc: Mapping[str, Any],
    token: str,
    values: Mapping[str, str] | None = None,
) -> list[str]:
    """Call every operation (POSTs with ``{}``) with and without the token; what is wrong."""
    wrong = []
    values = values or {}
    open_by_default = doc.get("security") == []
    for method, path in sorted(operations(doc)):
        op = doc["paths"][path][method.lower()]
        url = base_url + _fill(path, op, values)
        body: dict[str, Any] | None = {} if "requestBody" in op else None
        auth = {"Authorization": f"Bearer {token}"}
        async with session.request(method, url, json=body, headers=auth) as response:
            raw = await response.read()
            # A documented 404 with the API's JSON error (no such approval, say) is the
            # route answering; aiohttp's own 404/405 (plain text) means no route.
            answered = response.status == 404 and "404" in op["responses"] and raw[:1] == b"{"
            if response.status in (404, 405) and not answered:
                wrong.append(f"{method} {path}: {response.status} with the token")
            elif str(response.status) not in op["responses"]:
                wrong.append(f"{method} {path}: {response.status} is not documented")
        is_open = op.get("security", None if not open_by_default else []) == []
        async with session.request(method, url, json=body) as response:
            await response.read()
            if is_open and response.status == 401:
                wrong.append(f"{method} {path}: documented open, but 401 without the token")
            if not is_open and response.status != 401:
                wrong.append(f"{method} {path}: {response.status} without the token, not 401")
    return wrong
