"""`salon config check`: one OK line, or each problem with its file and key; exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from salon.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
SECRET = "s3cret-value-never-printed"

GOOD = """\
homeserver:
  url: http://127.0.0.1:8008
  server_name: example.org
  registration_shared_secret_env: T_SALON_SECRET
api:
  listen: 0.0.0.0:8765
  token_env: T_SALON_TOKEN
agents:
  echo:
    backend: {type: echo}
"""


def _check(tmp_path: Path, text: str) -> tuple[int, str]:
    config = tmp_path / "salon.yaml"
    config.write_text(text)
    result = runner.invoke(app, ["config", "check", "-c", str(config)])
    return result.exit_code, result.output


@pytest.fixture
def secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SALON_SECRET", SECRET)
    monkeypatch.setenv("T_SALON_TOKEN", SECRET)


def test_a_good_config_is_one_ok_line_without_secrets(tmp_path: Path, secrets_set: None) -> None:
    code, out = _check(tmp_path, GOOD)
    assert code == 0, out
    assert out.strip().splitlines() == [
        f"{tmp_path / 'salon.yaml'}: OK (1 agents, homeserver http://127.0.0.1:8008,"
        f" data in {tmp_path / 'salon-data'}, API on 0.0.0.0:8765)"
    ]
    assert SECRET not in out


def test_an_invalid_value_names_file_line_and_key(tmp_path: Path, secrets_set: None) -> None:
    code, out = _check(tmp_path, GOOD.replace("type: echo", "type: telepathy"))
    assert code == 2
    assert f"{tmp_path / 'salon.yaml'}:10: agents.echo.backend.type" in out
    assert "OK" not in out


def test_an_unset_secret_variable_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_SALON_SECRET", SECRET)
    monkeypatch.delenv("T_SALON_TOKEN", raising=False)
    code, out = _check(tmp_path, GOOD)
    assert code == 2
    assert f"{tmp_path / 'salon.yaml'}: api.token_env: environment variable T_SALON_TOKEN" in out
    assert SECRET not in out


def test_identities_without_credentials_are_refused(tmp_path: Path, secrets_set: None) -> None:
    text = GOOD.replace("  registration_shared_secret_env: T_SALON_SECRET\n", "")
    text += "    matrix: {user_id: '@echo:example.org', password_env: T_SALON_UNSET_PW}\n"
    code, out = _check(tmp_path, text)
    assert code == 2
    assert "agents.echo.matrix.password_env: environment variable T_SALON_UNSET_PW" in out
    assert str(tmp_path / "salon.yaml") in out


def test_salon_run_needs_a_homeserver(tmp_path: Path, secrets_set: None) -> None:
    code, out = _check(tmp_path, "agents: {echo: {backend: {type: echo}}}\n")
    assert code == 2
    assert "homeserver: required" in out


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", "-c", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope.yaml'}: config file not found" in result.output


def test_the_shipped_deployment_config_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SALON_HOMESERVER_URL": "http://synapse:8008",
        "SALON_SERVER_NAME": "example.org",
        "SALON_REGISTRATION_SECRET": SECRET,
        "SALON_API_TOKEN": SECRET,
        "SALON_DATA_DIR": "/data",
        "SALON_API_LISTEN": "0.0.0.0:8765",
    }.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["config", "check", "-c", str(ROOT / "deploy" / "salon.yaml")])
    assert result.exit_code == 0, result.output
    assert "data in /data, API on 0.0.0.0:8765" in result.output
    assert SECRET not in result.output
