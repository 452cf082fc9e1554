"""Fixtures for the backend tests: a fake OpenAI-compatible server and backends on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.agents.fakes import FakeOpenAI, serve

from salon.agents.openai_backend import OpenAIChatBackend
from salon.config.models import OpenAIBackend as OpenAIConfig

KEY_ENV = "SALON_TEST_OPENAI_KEY"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    """A running fake OpenAI server and its base URL (``…/v1``)."""
    server = FakeOpenAI()
    async with serve(server.app()) as url:
        yield server, f"{url}/v1"


@pytest.fixture
async def make_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., OpenAIChatBackend]]:
    """Build backends (tiny backoff by default); all are closed after the test."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    made: list[OpenAIChatBackend] = []

    def make(base_url: str, **fields: Any) -> OpenAIChatBackend:
        settings: dict[str, Any] = {
            "type": "openai",
            "base_url": base_url,
            "model": "test-model",
            "api_key_env": KEY_ENV,
            "retry_backoff_s": 0.01,
            "timeout_s": 5,
            **fields,
        }
        backend = OpenAIChatBackend(OpenAIConfig(**settings), agent_id="coder")
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()
