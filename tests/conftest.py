"""Shared fixtures: a real Synapse per test session, and fresh users on it."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest

from salon.devserver.synapse import (
    SynapseLayout,
    SynapseProcess,
    SynapseSettings,
    write_synapse_config,
)
from salon.matrix.registration import Credentials, register_with_shared_secret


@dataclass(frozen=True)
class TestHomeserver:
    """A running homeserver a test can talk to."""

    __test__: ClassVar[bool] = False  # not a test class, despite the name

    base_url: str
    server_name: str
    shared_secret: str
    layout: SynapseLayout
    # The server's process, for a test that stops and starts its own homeserver.
    process: SynapseProcess | None = field(default=None, compare=False)


@contextlib.contextmanager
def start_synapse(tmp_path: Path, **overrides: Any) -> Iterator[TestHomeserver]:
    """Run an extra Synapse under ``tmp_path`` for one block; stopped on exit.

    ``overrides`` are :class:`SynapseSettings` fields, e.g.
    ``rate_limit_overrides={"rc_message": {"per_second": 0.5, "burst_count": 2}}``.
    """
    settings: dict[str, Any] = {"data_dir": tmp_path, "port": None, **overrides}
    layout = write_synapse_config(SynapseSettings(**settings))
    process = SynapseProcess(layout)
    try:
        process.start()
        yield TestHomeserver(
            base_url=layout.base_url,
            server_name=layout.server_name,
            shared_secret=layout.registration_shared_secret,
            layout=layout,
            process=process,
        )
    finally:
        process.stop()


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestHomeserver]:
    """The session's shared Synapse: loopback, free port, relaxed rate limits."""
    with start_synapse(tmp_path_factory.mktemp("synapse")) as homeserver:
        yield homeserver


@pytest.fixture
def synapse_factory(tmp_path: Path) -> Iterator[Callable[..., TestHomeserver]]:
    """Start extra Synapses (e.g. with strict rate limits); all stop after the test.

    ``synapse_factory(rate_limit_overrides={...})`` takes :class:`SynapseSettings`
    fields; each server gets its own directory under the test's ``tmp_path``.
    """
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> TestHomeserver:
            data_dir = tmp_path / f"synapse-{secrets.token_hex(3)}"
            return stack.enter_context(start_synapse(data_dir, **overrides))

        yield start


def unique_localpart(prefix: str = "user") -> str:
    """A localpart no other test uses."""
    return f"{prefix}-{secrets.token_hex(6)}"


async def register_user(
    homeserver: TestHomeserver,
    localpart: str | None = None,
    *,
    admin: bool = False,
    displayname: str | None = None,
) -> Credentials:
    """Register a fresh user (random localpart unless given) with the shared secret."""
    async with aiohttp.ClientSession() as session:
        return await register_with_shared_secret(
            session,
            homeserver.base_url,
            homeserver.shared_secret,
            localpart or unique_localpart(),
            secrets.token_urlsafe(16),
            admin=admin,
            displayname=displayname,
        )


@pytest.fixture
def new_user(synapse: TestHomeserver) -> Callable[..., Awaitable[Credentials]]:
    """An async factory of fresh users on the session Synapse.

    ``creds = await new_user()`` or ``await new_user("alice", displayname="Alice")``.
    """

    async def make(
        localpart: str | None = None, *, admin: bool = False, displayname: str | None = None
    ) -> Credentials:
        return await register_user(synapse, localpart, admin=admin, displayname=displayname)

    return make


# --- Stores: SQLite and a real PostgreSQL --------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server for the session (started as `postgres` when root).

    Missing server binaries fail the tests that need it, saying how to install them:
    a PostgreSQL test never skips."""
    from tests import pg_server as pg

    try:
        server = pg.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """The URL of a fresh, empty PostgreSQL store (a schema of its own)."""
    return str(pg_server.fresh_url())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.subprocess)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL, once per backend: every test using it proves both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return str(request.getfixturevalue("pg_url"))


# --- Test tiers -------------------------------------------------------------------
# `make test-fast` runs `-m "not synapse and not subprocess"` with SALON_FAST_TIER=1.
# A test that needs the homeserver is marked `synapse` from its fixtures (or its
# folder); one that starts a process must say so with `pytest.mark.subprocess`, and
# the fast tier refuses to start one for a test that does not (so the tiers stay true).

_SYNAPSE_FIXTURES = {"synapse", "synapse_factory", "new_user"}
_PROCESS_FIXTURES = {"pg_server", "pg_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        in_integration = "integration" in Path(str(item.fspath)).parts
        if in_integration or fixtures & _SYNAPSE_FIXTURES:
            item.add_marker(pytest.mark.synapse)
        if fixtures & _PROCESS_FIXTURES:
            item.add_marker(pytest.mark.subprocess)


@pytest.fixture(autouse=True)
def _fast_tier_starts_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import subprocess

    if os.environ.get("SALON_FAST_TIER") != "1":
        return
    marks = {m.name for m in request.node.iter_markers()}
    if marks & {"subprocess", "synapse"}:
        return
    name = request.node.nodeid

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{name} starts a process: mark it pytest.mark.subprocess")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
