"""The dashboard's browser harness: a gateway with its API on the session Synapse (its
config in a file, so a reload can change it), and Debian's headless Chromium driven
by Playwright (never a downloaded browser). `make screenshots` uses it too."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from salon.app.gateway import Gateway, ReloadSource
from salon.config import load_config
from salon.matrix.registration import Credentials

from .conftest import salon_config
from .test_admin_api import OPERATOR_ENV, TOKEN_ENV, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AGENTS: dict[str, Any] = {
    "echo": {
        "label": "Echo",
        "backend": {"type": "echo", "fail_on": "FAIL"},
        "can_delegate_to": ["parrot"],
    },
    "parrot": {"label": "Parrot", "backend": {"type": "echo", "prefix": "🦜 "}},
    "owl": {"label": "Owl", "backend": {"type": "echo", "prefix": "🦉 "}},
}


@dataclass
class Dash:
    """A running gateway with the dashboard, its config file, and an HTTP session."""

    gateway: Gateway
    base: str
    token: str
    http: aiohttp.ClientSession
    config_path: Path
    data: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def login_link(self) -> str:
        assert self.gateway.api is not None
        return self.gateway.api.login_link(self.base)

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.http.post(self.base + path, json=body, headers=self.auth) as r:
            return r.status, await r.json()

    async def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        async with self.http.get(self.base + "/metrics", headers=self.auth) as r:
            text = await r.text()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def write_agents(self, agents: dict[str, Any]) -> None:
        """Rewrite the config file with these agents (a reload picks it up)."""
        self.data["agents"] = agents
        self.config_path.write_text(yaml.safe_dump(self.data, allow_unicode=True, sort_keys=False))


async def start_dash(
    synapse: Any,
    tmp_path: Path,
    operator: Credentials,
    monkeypatch: pytest.MonkeyPatch,
    start: Callable[..., Awaitable[Gateway]],
    http: aiohttp.ClientSession,
    agents: dict[str, Any] | None = None,
) -> Dash:
    token = secrets.token_urlsafe(16)
    monkeypatch.setenv(TOKEN_ENV, token)
    monkeypatch.setenv(OPERATOR_ENV, operator.access_token)
    config = salon_config(
        synapse,
        tmp_path,
        agents=agents or AGENTS,
        api={
            "listen": f"127.0.0.1:{free_port()}",
            "token_env": TOKEN_ENV,
            "operator_user_id": operator.user_id,
            "operator_token_env": OPERATOR_ENV,
        },
    )
    data = config.model_dump(mode="json", exclude_none=True)
    path = tmp_path / "salon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    # No file watching: the dashboard's button asks for the reload.
    gateway = await start(
        load_config(path), reload=ReloadSource(lambda: load_config(path), watch=None)
    )
    assert gateway.api is not None
    return Dash(gateway, gateway.api.url, token, http, path, data)


@asynccontextmanager
async def chromium(profile: Path, dark: bool = False) -> AsyncIterator[Any]:
    """A fresh headless Chromium profile (Debian's binary), as a Playwright context."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
            color_scheme="dark" if dark else "light",
        )
        try:
            yield context
        finally:
            await context.close()
