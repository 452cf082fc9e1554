"""The files that hold access tokens and messages are readable by their owner only."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from salon.agents.profile import AgentProfile
from salon.ids import AgentId
from salon.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems run with (files 0644, dirs 0755 by default)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_a_new_store_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / "salon.db"
    store = await Store.open(f"sqlite:///{db}")
    try:
        await store.kv.next("writes-something")
        assert mode(data_dir) == 0o700
        files = [db, db.with_name("salon.db-wal"), db.with_name("salon.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await store.close()


async def test_opening_fixes_an_old_world_readable_store(tmp_path: Path) -> None:
    db = tmp_path / "salon.db"
    # An older version's store, held open by another process so its WAL files exist.
    other = sqlite3.connect(db)
    try:
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("CREATE TABLE t (x)")
        other.execute("INSERT INTO t VALUES (1)")
        other.commit()
        files = [db, db.with_name("salon.db-wal"), db.with_name("salon.db-shm")]
        for f in files:
            f.chmod(0o644)
        store = await Store.open(f"sqlite:///{db}")
        await store.close()
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        other.close()


async def test_an_existing_directory_is_left_alone(tmp_path: Path) -> None:
    # The store may sit in a shared directory (the cwd, /var/lib): only the
    # database files are the store's to restrict.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    store = await Store.open(f"sqlite:///{shared / 'salon.db'}")
    await store.close()
    assert mode(shared) == 0o755
    assert mode(shared / "salon.db") == 0o600


async def test_an_in_memory_store_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await Store.open("sqlite:///:memory:")
    await store.close()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("exists", [False, True])
def test_agent_home_is_private(tmp_path: Path, exists: bool) -> None:
    home = tmp_path / "agents" / "coder"
    if exists:
        home.mkdir(parents=True, mode=0o755)
    AgentProfile(AgentId("coder"), "Coder", "writes code", home).ensure_home()
    assert mode(home) == 0o700


async def test_salon_up_makes_its_data_dir_private_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from salon.cli import up as up_module
    from salon.config.models import SalonConfig

    class Stop(Exception):
        pass

    def no_synapse(*_: Any, **__: Any) -> Any:
        raise Stop  # the test ends here: the mode is set before anything else runs

    monkeypatch.setattr(up_module, "write_synapse_config", no_synapse)
    data_dir = tmp_path / "salon-data"
    data_dir.mkdir(mode=0o755)  # `salon` creates it for its log file before `up` runs
    config = SalonConfig.model_validate({"agents": {"echo": {"backend": {"type": "echo"}}}})
    with pytest.raises(Stop):
        await up_module.up(config, data_dir, port=None, operator="me", console=Console(quiet=True))
    assert mode(data_dir) == 0o700
