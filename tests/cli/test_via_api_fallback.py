"""Without an answering API (no api.json, one naming a dead port, a broken one, or
more messages than it serves) the commands take the direct path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.test_via_api import _api_json, _dead_operator_file, runner

from salon.cli.api_file import ApiFile
from salon.cli.main import app
from salon.devserver.synapse import free_port

from .apifake import FakeApi, running_fake


@pytest.fixture
def fake() -> Iterator[FakeApi]:
    with running_fake() as api:
        yield api


def test_no_api_json_takes_the_direct_path(fake: FakeApi, tmp_path: Path) -> None:
    url = _dead_operator_file(tmp_path)
    result = runner.invoke(app, ["who", "-d", str(tmp_path), "-v"])
    assert result.exit_code == 1
    assert f"no {tmp_path / 'api.json'}; using the direct path" in result.output
    assert f"the homeserver at {url} is unreachable" in result.output
    assert fake.requests == []


def test_api_json_naming_a_dead_port_takes_the_direct_path(tmp_path: Path) -> None:
    url = _dead_operator_file(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    ApiFile(url=dead, token="t", pid=1).save(tmp_path)
    for args in (["who"], ["send", "--to", "parrot", "hi"], ["read", "--room", "parrot"]):
        result = runner.invoke(app, [*args, "-d", str(tmp_path)])
        assert result.exit_code == 1, (args, result.output)
        # Nothing said about the API (only with --verbose); the direct path's own error.
        assert result.output.startswith(f"error: the homeserver at {url} is unreachable"), args
    verbose = runner.invoke(app, ["who", "-d", str(tmp_path), "-v"])
    assert f"the API at {dead} (from {tmp_path / 'api.json'}) does not answer" in verbose.output
    assert "using the direct path" in verbose.output


def test_a_dead_api_option_takes_the_direct_path_for_status(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["status", "-d", str(tmp_path), "--api", dead])
    assert result.exit_code == 2
    assert "no store here yet" in result.output  # the store path's answer


def test_a_broken_api_json_takes_the_direct_path(tmp_path: Path) -> None:
    _dead_operator_file(tmp_path)
    (tmp_path / "api.json").write_text("{not json")
    result = runner.invoke(app, ["who", "-d", str(tmp_path), "-v"])
    assert result.exit_code == 1
    assert "unreadable API file" in result.output and "is unreachable" in result.output


def test_a_long_read_is_read_directly(fake: FakeApi, tmp_path: Path) -> None:
    _dead_operator_file(tmp_path)
    _api_json(tmp_path, fake)
    result = runner.invoke(app, ["read", "--room", "parrot", "-n", "300", "-d", str(tmp_path)])
    assert result.exit_code == 1 and "is unreachable" in result.output
    assert fake.requests == []  # the API returns at most 200: not even probed
