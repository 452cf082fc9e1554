"""Loading salon.yaml: substitution and path resolution. Its errors, which point at
lines, are test_loader_errors.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from salon._exceptions import ConfigError
from salon.config import EchoBackend, load_config, parse_config, read_persona

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "salon.yaml"

MINIMAL = """\
homeserver: {url: "http://127.0.0.1:8008", server_name: localhost}
agents:
  echo:
    backend: {type: echo}
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, text: str, name: str = "salon.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(directory: Path, text: str) -> ConfigError:
    """Load ``text`` as ./salon.yaml and return the ConfigError it must raise."""
    write(directory, text)
    with pytest.raises(ConfigError) as info:
        load_config("salon.yaml")
    assert info.value.path == "salon.yaml"
    return info.value


def test_minimal_config_loads(in_tmp: Path) -> None:
    config = load_config(write(in_tmp, MINIMAL))
    assert config.homeserver is not None
    assert config.homeserver.server_name == "localhost"
    assert list(config.agents) == ["echo"]
    assert isinstance(config.agents["echo"].backend, EchoBackend)
    assert config.agents["echo"].display_label == "Echo"


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.homeserver is None  # `salon up` supplies it
    # The offline demo agents come first; the concierge answers what nothing else does.
    assert next(iter(config.agents)) == "concierge"
    assert config.agents["concierge"].display_label == "Concierge"
    assert config.default_agent == "concierge"


def test_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALON_TEST_MODEL", "llama3")
    monkeypatch.delenv("SALON_TEST_UNSET_URL", raising=False)
    config = parse_config(
        """\
agents:
  coder:
    description: costs $${PRICE}
    backend:
      type: openai
      model: ${SALON_TEST_MODEL}
      base_url: ${SALON_TEST_UNSET_URL:-http://127.0.0.1:11434/v1}
      timeout_s: ${SALON_TEST_UNSET_TIMEOUT:-5}
"""
    )
    backend = config.agents["coder"].backend
    assert backend.type == "openai"
    assert backend.model == "llama3"
    assert backend.base_url == "http://127.0.0.1:11434/v1"
    assert backend.timeout_s == 5
    assert config.agents["coder"].description == "costs ${PRICE}"


def test_shared_secret_env_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALON_TEST_SECRET", "hunter2")
    config = parse_config(
        MINIMAL.replace(
            "server_name: localhost}",
            "server_name: localhost, registration_shared_secret_env: SALON_TEST_SECRET}",
        )
    )
    assert config.homeserver is not None
    assert config.homeserver.registration_shared_secret == "hunter2"
    assert config.homeserver.registration_shared_secret_env is None


def test_persona_file_resolution(tmp_path: Path) -> None:
    (tmp_path / "agents" / "coder").mkdir(parents=True)
    (tmp_path / "agents" / "coder" / "SOUL.md").write_text("You write code.\n", encoding="utf-8")
    path = write(
        tmp_path,
        """\
        agents:
          coder:
            backend: echo
            persona: agents/coder/SOUL.md
          echo:
            backend: echo
            persona: You repeat things, and/or nod.
          quiet:
            backend: echo
        """,
    )
    config = load_config(path)
    coder = config.agents["coder"]
    assert coder.persona == str((tmp_path / "agents" / "coder" / "SOUL.md").resolve())
    assert coder.id == "coder"  # the id survives the copy made while resolving
    assert read_persona(coder) == "You write code.\n"
    assert read_persona(config.agents["echo"]) == "You repeat things, and/or nod."
    assert read_persona(config.agents["quiet"]) is None


def test_store_url_resolution(tmp_path: Path) -> None:
    relative = parse_config(MINIMAL, base_dir=tmp_path)
    assert relative.store.url == f"sqlite:///{tmp_path.resolve()}/salon-data/salon.db"
    absolute = parse_config(MINIMAL + "store: {url: 'sqlite:////var/salon.db'}\n")
    assert absolute.store.url == "sqlite:////var/salon.db"
    memory = parse_config(MINIMAL + "store: {url: 'sqlite:///:memory:'}\n")
    assert memory.store.sqlite_path == ":memory:"
    pg = "postgresql://salon@db.internal:5432/salon"
    postgres = parse_config(MINIMAL + f"store: {{url: '{pg}', pool_size: 4}}\n", base_dir=tmp_path)
    assert postgres.store.url == pg, "a server URL is not a path to resolve"
    assert not postgres.store.is_sqlite and postgres.store.pool_size == 4


def test_parse_config_source_name() -> None:
    with pytest.raises(ConfigError, match=r"^<string>:1: agnets: ") as info:
        parse_config("agnets: {}\nagents: {e: {backend: echo}}\n")
    assert info.value.path == "<string>"


def test_x_keys_hold_reusable_anchors() -> None:
    config = parse_config(
        """\
x-local: &local {type: openai, base_url: "http://127.0.0.1:11434/v1", model: qwen2.5}
agents:
  coder: {backend: *local}
  writer:
    backend: {<<: *local, model: llama3}
"""
    )
    models = [getattr(a.backend, "model", None) for a in config.agents.values()]
    assert models == ["qwen2.5", "llama3"]


def test_a_default_may_name_another_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "agents: {echo: {backend: {type: echo}}}\n"
        "store: {url: '${SALON_T_STORE:-sqlite:///${SALON_T_DIR:-/var/lib/salon}/s.db}'}\n",
    )
    monkeypatch.delenv("SALON_T_STORE", raising=False)
    monkeypatch.delenv("SALON_T_DIR", raising=False)
    assert load_config(path).store.url == "sqlite:////var/lib/salon/s.db"
    monkeypatch.setenv("SALON_T_DIR", "/data")
    assert load_config(path).store.url == "sqlite:////data/s.db"
    monkeypatch.setenv("SALON_T_STORE", "postgresql://salon@db/salon")
    assert load_config(path).store.url == "postgresql://salon@db/salon"
