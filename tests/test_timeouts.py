"""Every outbound HTTP client Salon creates names its timeout (aiohttp's and
mautrix's default is 300 s: one silent server would stall whoever waits on it)."""

from __future__ import annotations

import ast
from pathlib import Path

import salon

CLIENTS = {"ClientSession", "AsyncOpenAI", "RateLimitedHTTPAPI", "HTTPAPI"}
SRC = Path(salon.__file__).parent


def _name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def test_every_http_client_is_created_with_a_timeout() -> None:
    found, missing = 0, []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and _name(node) in CLIENTS:
                found += 1
                if not any(k.arg == "timeout" for k in node.keywords):
                    missing.append(f"{path.relative_to(SRC)}:{node.lineno} {_name(node)}")
    assert found >= 8  # the walk sees them (gateway, CLI, backends, router, Matrix)
    assert missing == []
