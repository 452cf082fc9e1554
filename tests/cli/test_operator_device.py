"""`salon up` logs the operator in to the device it had the last time, so the
operator keeps one encryption device across runs."""

from __future__ import annotations

from pathlib import Path

from salon.cli.operator_file import OperatorFile, previous_device


def _save(data_dir: Path, user_id: str, device_id: str) -> None:
    OperatorFile(
        homeserver_url="http://127.0.0.1:1",
        server_name="localhost",
        user_id=user_id,
        password="p",
        access_token="t",
        device_id=device_id,
        space_alias="#s:localhost",
        lobby_alias="#l:localhost",
    ).save(data_dir)


def test_the_last_runs_device_is_reused_for_the_same_operator(tmp_path: Path) -> None:
    assert previous_device(tmp_path, "operator") is None  # the first run
    _save(tmp_path, "@operator:localhost", "OPDEVICE")
    assert previous_device(tmp_path, "operator") == "OPDEVICE"
    assert previous_device(tmp_path, "Operator") == "OPDEVICE"  # localparts are lowercased
    assert previous_device(tmp_path, "someone") is None  # another operator: a device of its own


def test_a_broken_operator_file_means_a_new_device(tmp_path: Path) -> None:
    (tmp_path / "operator.json").write_text("{not json")
    assert previous_device(tmp_path, "operator") is None
