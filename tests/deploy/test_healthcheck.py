"""deploy/healthcheck.py: exit 0 only when /healthz answers 200."""

from __future__ import annotations

import http.server
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("salon_healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 503
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_healthy_when_healthz_answers_200(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALON_HEALTHZ_URL", f"{server}/healthz")
    assert _load().main() == 0


def test_unhealthy_on_another_status(
    server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SALON_HEALTHZ_URL", f"{server}/readyz")
    assert _load().main() == 1
    assert "HTTP 503" in capsys.readouterr().err


def test_unhealthy_when_nothing_listens(
    server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SALON_HEALTHZ_URL", "http://127.0.0.1:1/healthz")
    assert _load().main() == 1
    assert "unhealthy: http://127.0.0.1:1/healthz" in capsys.readouterr().err


def test_default_url_is_the_default_api_port() -> None:
    from salon.config.models import ApiConfig

    default = _load().DEFAULT_URL
    assert default == f"http://127.0.0.1:{ApiConfig().port}/healthz"
