"""`salon status` from a store populated directly: one line per delegation, a gateway
that stopped shown as not running."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salon.cli.main import app
from salon.store import Store
from salon.store.delegations import DelegationDirection, DelegationRecord
from salon.store.kv import GATEWAY_STATUS_KEY

runner = CliRunner()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _delegation(
    id: str, direction: DelegationDirection, state: str, created_at: int
) -> DelegationRecord:
    return DelegationRecord(
        id=id,
        direction=direction,
        from_agent="echo",
        to_agent="parrot",
        task="say hi",
        root=id,
        chain=("echo", "parrot"),
        hop=1,
        target_room="!parrot:localhost",
        deadline_ts=created_at + 300_000,
        state=state,  # type: ignore[arg-type]
        created_at=created_at,
        updated_at=created_at,
    )


def _populate(data_dir: Path, gateway: dict[str, object] | None) -> None:
    async def go() -> None:
        store = await Store.open(f"sqlite:///{data_dir / 'salon.db'}")
        try:
            now = _now_ms()
            out, inn = DelegationDirection.OUT, DelegationDirection.IN
            # One local delegation: the delegator's row and the target's row, one id.
            await store.delegations.create(_delegation("dlg-local", out, "sent", now - 65_000))
            await store.delegations.create(_delegation("dlg-local", inn, "progress", now - 64_000))
            # One to a peer elsewhere: only our side's row.
            await store.delegations.create(_delegation("dlg-remote", out, "accepted", now - 5_000))
            # Finished on both sides: not open.
            await store.delegations.create(_delegation("dlg-done", out, "completed", now))
            await store.delegations.create(_delegation("dlg-done", inn, "completed", now))
            if gateway is not None:
                await store.kv.set(GATEWAY_STATUS_KEY, json.dumps(gateway))
        finally:
            await store.close()

    asyncio.run(go())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_each_local_delegation_is_one_line(tmp_path: Path) -> None:
    policy = "admins only (@op:localhost)"
    _populate(
        tmp_path,
        {"gateway": "salon", "pid": os.getpid(), "updated_ms": _now_ms(), "access": policy},
    )
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    local = [line for line in lines if "dlg-local" in line]
    assert len(local) == 1, result.stdout
    # The furthest state either side reached, the age of the first row.
    assert "echo" in local[0] and "parrot" in local[0] and "progress" in local[0]
    assert re.search(r"\b6[5-9]s\b", local[0]), local[0]
    assert len([line for line in lines if "dlg-remote" in line]) == 1
    assert "dlg-done" not in result.stdout
    assert "running" in result.stdout and "not running" not in result.stdout
    assert f"access: {policy}" in result.stdout  # who may reach the agents


@pytest.mark.subprocess
def test_a_gateway_that_stopped_is_not_shown_as_current(tmp_path: Path) -> None:
    # The status row of a gateway that has gone: stale and its pid dead.
    _populate(
        tmp_path,
        {
            "gateway": "salon",
            "pid": _dead_pid(),
            "updated_ms": _now_ms() - 5 * 60_000,
            "loops": [{"name": "sync:x", "restarts": 3, "backing_off": True, "last_error": "e"}],
        },
    )
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "not running (last seen 5m ago)" in result.stdout
    assert "restarting loops" not in result.stdout  # those were the dead gateway's


@pytest.mark.subprocess
def test_a_fresh_row_whose_process_is_gone_is_not_running(tmp_path: Path) -> None:
    # Killed a second ago: the row is recent, but its pid is not alive on this host.
    _populate(tmp_path, {"gateway": "salon", "pid": _dead_pid(), "updated_ms": _now_ms()})
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert "not running (last seen 0s ago)" in result.stdout


def test_a_row_not_refreshed_for_long_is_not_running_even_if_the_pid_exists(
    tmp_path: Path,
) -> None:
    # The pid was reused by another process (here: this test) after the gateway died.
    _populate(tmp_path, {"gateway": "salon", "pid": os.getpid(), "updated_ms": _now_ms() - 60_000})
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert "not running (last seen 60s ago)" in result.stdout


def test_no_gateway_ever(tmp_path: Path) -> None:
    _populate(tmp_path, None)
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "no gateway has run on this store yet" in result.stdout


def test_a_refused_reload_shows_in_status() -> None:
    import json as _json

    from salon.cli.status import reload_problems

    refused = (_json.dumps({"ok": False, "error": "salon.yaml:3: agents.x: bad"}),)
    assert reload_problems(refused) == [
        "the last config reload was refused: salon.yaml:3: agents.x: bad"
    ]
    later = (_json.dumps({"ok": True, "needs_restart": ["homeserver"]}),)
    assert reload_problems(later) == ["config changes need a restart: homeserver"]
    assert reload_problems(None) == []


def test_status_reads_the_key_the_reloader_writes() -> None:
    from salon.cli.status import RELOAD_STATUS_KEY as read
    from salon.gateway.reload import RELOAD_STATUS_KEY as written

    assert read == written


def test_status_shows_the_stores_size_on_disk(tmp_path: Path) -> None:
    _populate(tmp_path, None)
    size = sum(p.stat().st_size for p in tmp_path.glob("salon.db*") if not p.name.endswith("-shm"))
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    match = re.search(r"store: ([\d.]+) (kB|MB) on disk", result.stdout)
    assert match, result.stdout
    shown = float(match[1]) * (1000 if match[2] == "kB" else 1_000_000)
    assert abs(shown - size) <= 0.06 * size


def test_status_reads_a_postgresql_store(tmp_path: Path, pg_url: str) -> None:
    async def go() -> None:
        store = await Store.open(pg_url)
        try:
            now = _now_ms()
            await store.delegations.create(
                _delegation("dlg-pg", DelegationDirection.OUT, "sent", now - 5_000)
            )
            await store.turns.admit("$turn", "echo", "!r:x", owner="gw-1", lease_until=now)
            gateway = {"gateway": "salon", "pid": os.getpid(), "updated_ms": now}
            await store.kv.set(GATEWAY_STATUS_KEY, json.dumps(gateway))
        finally:
            await store.close()

    asyncio.run(go())
    config = tmp_path / "salon.yaml"
    config.write_text(
        f"agents: {{echo: {{backend: {{type: echo}}}}}}\nstore: {{url: '{pg_url}'}}\n"
        f"data_dir: {tmp_path}\n"
    )
    result = runner.invoke(app, ["status", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "dlg-pg" in result.stdout and "$turn" in result.stdout
    assert "running" in result.stdout and "not running" not in result.stdout


def test_status_shows_each_identitys_encryption_device(tmp_path: Path) -> None:
    device = {
        "identity": "@salon_echo:localhost",
        "device_id": "ECHODEVICE",
        "one_time_keys": 49,
        "undecryptable_waiting": 2,
        "decryption_failures": 3,
    }
    published = {"gateway": "salon", "pid": os.getpid(), "updated_ms": _now_ms()}
    _populate(tmp_path, {**published, "encryption": [device]})
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.stdout.splitlines() if "ECHODEVICE" in line]
    assert re.search(r"@salon_echo:localhost\s.*ECHODEVICE\s.*49\s.*2\s.*3", line), line
