"""A real store per test, and the command harness on a fake homeserver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.commands.harness import Harness

from salon.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    yield opened
    await opened.close()


@pytest.fixture
async def h(store: Store) -> Harness:
    return await Harness.start(store)
