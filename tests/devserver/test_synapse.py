"""The embedded Synapse: config layout, lifecycle, stale processes, failures."""

from __future__ import annotations

import importlib.util
import json
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import yaml

from salon._exceptions import DevServerError
from salon.devserver.synapse import (
    SynapseLayout,
    SynapseProcess,
    SynapseSettings,
    free_port,
    write_synapse_config,
)
from salon.matrix.registration import register_with_shared_secret

if TYPE_CHECKING:
    from conftest import TestHomeserver


pytestmark = pytest.mark.subprocess


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def versions_ok(layout: SynapseLayout) -> bool:
    url = f"{layout.base_url}/_matrix/client/versions"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return bool(response.status == 200 and "versions" in json.load(response))


# --- config -----------------------------------------------------------------------


def test_config_is_local_fast_and_unthrottled(tmp_path: Path) -> None:
    layout = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    config = load_yaml(layout.config_path)

    assert layout.root == (tmp_path / "synapse").resolve()
    assert all(p.is_absolute() for p in (layout.config_path, layout.database_path))
    assert layout.base_url == f"http://127.0.0.1:{layout.port}"
    [listener] = config["listeners"]
    assert listener["bind_addresses"] == ["127.0.0.1"]
    assert listener["port"] == layout.port
    assert listener["type"] == "http" and listener["tls"] is False
    assert listener["resources"] == [{"names": ["client"], "compress": False}]
    assert config["database"] == {
        "name": "sqlite3",
        "args": {"database": str(layout.database_path)},
    }
    assert config["registration_shared_secret"] == layout.registration_shared_secret
    assert len(layout.registration_shared_secret) >= 32
    assert config["enable_registration"] is False
    assert config["report_stats"] is False
    assert config["bcrypt_rounds"] == 4
    assert config["trusted_key_servers"] == []
    assert config["federation_domain_whitelist"] == []
    assert config["presence"] == {"enabled": False}
    for key in ("media_store_path", "signing_key_path", "pid_file", "log_config"):
        assert Path(config[key]).is_absolute(), key
    assert layout.signing_key_path.read_text().startswith("ed25519 a_")
    # Secrets are readable by the owner only.
    assert stat.S_IMODE(layout.config_path.stat().st_mode) == 0o600

    assert config["rc_message"]["per_second"] >= 1000
    assert config["rc_message"]["burst_count"] >= 1000
    assert config["rc_login"]["failed_attempts"]["burst_count"] >= 1000
    assert config["rc_joins"]["local"]["per_second"] >= 1000
    assert config["rc_joins_per_room"]["per_second"] >= 1000
    assert config["rc_invites"]["per_issuer"]["burst_count"] >= 1000
    assert config["rc_room_creation"]["per_second"] >= 1000
    assert config["rc_presence"]["per_user"]["per_second"] >= 1000
    assert config["rc_profile"]["burst_count"] >= 1000

    log_config = load_yaml(layout.log_config_path)
    assert log_config["root"]["level"] == "WARNING"
    [handler_name] = log_config["root"]["handlers"]
    handler = log_config["handlers"][handler_name]
    assert handler["filename"] == str(layout.log_file)
    assert "StreamHandler" not in json.dumps(log_config)


def test_rewrite_reuses_secret_and_port(tmp_path: Path) -> None:
    first = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    key = first.signing_key_path.read_text()

    second = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    assert second == first
    assert second.signing_key_path.read_text() == key

    other_port = free_port()
    third = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=other_port))
    assert third.port == other_port
    assert third.registration_shared_secret == first.registration_shared_secret
    assert load_yaml(third.config_path)["listeners"][0]["port"] == other_port
    # ... and the new port is what a later port=None write keeps.
    assert write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None)).port == other_port


def test_secret_is_random_per_data_dir(tmp_path: Path) -> None:
    a = write_synapse_config(SynapseSettings(data_dir=tmp_path / "a", port=None))
    b = write_synapse_config(SynapseSettings(data_dir=tmp_path / "b", port=None))
    assert a.registration_shared_secret != b.registration_shared_secret


def test_rate_limit_overrides_replace_top_level_blocks(tmp_path: Path) -> None:
    strict = {"per_second": 0.5, "burst_count": 2}
    layout = write_synapse_config(
        SynapseSettings(data_dir=tmp_path, port=None, rate_limit_overrides={"rc_message": strict})
    )
    config = load_yaml(layout.config_path)
    assert config["rc_message"] == strict
    assert config["rc_joins_per_room"]["per_second"] >= 1000


def test_an_appservice_gets_the_extensions_its_encryption_needs(tmp_path: Path) -> None:
    registration = tmp_path / "registration.yaml"
    plain = write_synapse_config(SynapseSettings(data_dir=tmp_path / "plain", port=None))
    assert "experimental_features" not in load_yaml(plain.config_path)
    layout = write_synapse_config(
        SynapseSettings(data_dir=tmp_path, port=None, app_service_config_files=(registration,))
    )
    config = load_yaml(layout.config_path)
    assert config["app_service_config_files"] == [str(registration)]
    assert config["experimental_features"] == {
        "msc2409_to_device_messages_enabled": True,
        "msc3202_transaction_extensions": True,
    }


def test_non_loopback_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DevServerError, match="loopback"):
        write_synapse_config(SynapseSettings(data_dir=tmp_path, host="0.0.0.0"))


# --- lifecycle ----------------------------------------------------------------------


def test_start_answers_and_stop_leaves_nothing_running(tmp_path: Path) -> None:
    layout = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    process = SynapseProcess(layout)
    try:
        process.start()
        assert process.running
        pid = process.pid
        assert pid is not None and pid_alive(pid)
        assert layout.pid_file.read_text().strip() == str(pid)
        assert versions_ok(layout)
    finally:
        process.stop()

    assert not process.running
    assert not pid_alive(pid)
    assert not port_open(layout.port)
    assert not layout.pid_file.exists()
    assert layout.database_path.exists()  # stop() removes nothing else
    process.stop()  # idempotent


def test_stale_synapse_from_a_previous_run_is_replaced(tmp_path: Path) -> None:
    layout = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    crashed = SynapseProcess(layout)
    crashed.start()
    stale_pid = crashed.pid
    assert stale_pid is not None
    del crashed  # "forgotten": never stopped, like a run that crashed

    fresh = SynapseProcess(layout)
    try:
        fresh.start()
        assert not pid_alive(stale_pid)
        assert fresh.pid != stale_pid
        assert versions_ok(layout)
    finally:
        fresh.stop()


def test_broken_config_raises_with_log_lines(tmp_path: Path) -> None:
    layout = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    config = load_yaml(layout.config_path)
    config["database"] = {"name": "no-such-engine-xyz"}
    layout.config_path.write_text(yaml.safe_dump(config))

    process = SynapseProcess(layout)
    with pytest.raises(DevServerError) as excinfo:
        process.start(timeout=30)
    message = str(excinfo.value)
    assert "exited" in message
    assert "no-such-engine-xyz" in message  # from Synapse's own error output
    assert not process.running


def test_port_in_use_is_reported_before_spawning(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        layout = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=port))
        process = SynapseProcess(layout)
        with pytest.raises(DevServerError, match="already listens"):
            process.start()
        assert process.pid is None


def test_missing_synapse_points_at_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "synapse" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(DevServerError, match=r"salon\[local\]"):
        SynapseProcess(layout).start()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_synapse_dies_with_a_killed_parent(tmp_path: Path) -> None:
    layout = write_synapse_config(SynapseSettings(data_dir=tmp_path, port=None))
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert pid_alive(child_pid)
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
        assert wait_until(lambda: not pid_alive(child_pid), timeout=10)
        assert not port_open(layout.port)
    finally:
        parent.kill()
        parent.wait()


PARENT_SCRIPT = """
import sys, threading, time
from pathlib import Path
from salon.devserver.synapse import SynapseProcess, SynapseSettings, write_synapse_config

layout = write_synapse_config(SynapseSettings(data_dir=Path(sys.argv[1]), port=None))
process = SynapseProcess(layout)
# Start from a short-lived thread, as asyncio.to_thread would: the child must
# outlive that thread and die only with the process.
starter = threading.Thread(target=process.start)
starter.start()
starter.join()
time.sleep(0.5)
assert process.running, "Synapse died with the thread that started it"
print(process.pid, flush=True)
time.sleep(60)
"""


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def test_strict_rate_limits_apply(synapse_factory: Callable[..., TestHomeserver]) -> None:
    strict = synapse_factory(rate_limit_overrides={"rc_message": STRICT_MESSAGES})
    base = f"{strict.base_url}/_matrix/client/v3"
    async with aiohttp.ClientSession() as session:
        creds = await register_with_shared_secret(
            session, strict.base_url, strict.shared_secret, "strict", "pw"
        )
        headers = {"Authorization": f"Bearer {creds.access_token}"}
        async with session.post(f"{base}/createRoom", json={}, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            room_id = (await resp.json())["room_id"]
        statuses = []
        for txn in range(4):
            url = f"{base}/rooms/{room_id}/send/m.room.message/t{txn}"
            body = {"msgtype": "m.text", "body": str(txn)}
            async with session.put(url, json=body, headers=headers) as resp:
                statuses.append(resp.status)
    assert statuses[0] == 200  # createRoom took a token from the same bucket
    assert 429 in statuses


STRICT_MESSAGES = {"per_second": 0.5, "burst_count": 2}
