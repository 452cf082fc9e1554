"""`salon run` with ``api.token_env: null``: the API is never open. The gateway makes
a token at start, writes it (owner only) to ``<data_dir>/api.json``, refuses calls
without it, and the CLI finds it there."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cli.test_stop import ROOT, SALON, _config, _wait_for
from typer.testing import CliRunner

from salon.cli.main import app

pytestmark = pytest.mark.subprocess


def _get(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _open_once(url: str) -> Any:
    """The answer to ``url`` itself (a redirect not followed)."""
    try:
        return urllib.request.build_opener(_NoRedirects).open(url, timeout=10)
    except urllib.error.HTTPError as e:
        return e


def test_salon_run_without_token_env_makes_one(synapse: Any, tmp_path: Path) -> None:
    config = _config(synapse, tmp_path)
    data = yaml.safe_load(config.read_text())
    data["api"]["token_env"] = None
    config.write_text(yaml.safe_dump(data))
    data_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != "SALON_API_TOKEN"}
    proc = subprocess.Popen(
        [*SALON, "run", "-c", str(config)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    try:
        api_json = data_dir / "api.json"
        _wait_for(lambda: api_json.exists() or proc.poll() is not None, 60, "api.json")
        assert proc.poll() is None
        assert stat.S_IMODE(api_json.stat().st_mode) == 0o600
        api = json.loads(api_json.read_text())
        assert isinstance(api["token"], str) and len(api["token"]) >= 32
        assert _get(f"{api['url']}/api/v1/agents", None) == 401
        assert _get(f"{api['url']}/api/v1/agents", "wrong") == 401
        assert _get(f"{api['url']}/api/v1/agents", api["token"]) == 200
        # The dashboard's one-time login link: a session cookie once, then spent.
        link = api["dashboard_url"]
        assert link.startswith(f"{api['url']}/dashboard/login?code=")
        first = _open_once(link)
        assert first.status == 303 and first.headers["Location"] == "/dashboard/"
        assert "HttpOnly" in first.headers["Set-Cookie"]
        second = _open_once(link)
        assert second.headers["Location"] == "/dashboard/#link-used"
        assert "Set-Cookie" not in second.headers
        # The CLI reads the token from api.json and talks to the API.
        who = CliRunner().invoke(app, ["status", "-c", str(config), "--verbose"])
        assert who.exit_code == 0, who.output
        assert f"using the API at {api['url']}" in who.output
    finally:
        proc.terminate()
        proc.wait(30)
