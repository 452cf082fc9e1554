"""Loading salon.yaml: substitution, path resolution, and errors that point at lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            agents:
              coder:
                label: Coder
                backend:
                  type: nope
            """,
            "salon.yaml:5: agents.coder.backend.type: "
            "Input should be 'echo', 'openai', 'http', 'python' or 'team'",
            id="unknown-backend-type",
        ),
        pytest.param(
            """\
            agents:
              coder:
                backend:
                  model: qwen
            """,
            "salon.yaml:3: agents.coder.backend.type: Field required",
            id="backend-without-type",
        ),
        pytest.param(
            """\
            agents:
              echo: {backend: echo}
              coder:
                label: Coder
            """,
            "salon.yaml:3: agents.coder.backend: Field required",
            id="missing-backend",
        ),
        pytest.param(
            """\
            agents:
              echo: {backend: echo}
              Bad_Id:
                backend: echo
            """,
            "salon.yaml:3: agents.Bad_Id: invalid agent id 'Bad_Id'",
            id="bad-agent-id",
        ),
        pytest.param(
            """\
            agents:
              coder: {backend: echo}
              echo: {backend: echo}
            default_agent: x
            """,
            "salon.yaml:4: default_agent: unknown agent 'x' (known: coder, echo)",
            id="unknown-default-agent",
        ),
        pytest.param(
            """\
            locale: en
            agnets:
              echo: {backend: echo}
            """,
            "salon.yaml:2: agnets: Extra inputs are not permitted (did you mean 'agents'?)",
            id="typo-top-level",
        ),
        pytest.param(
            """\
            agents:
              coder:
                backend:
                  type: openai
                  model: qwen
                  temprature: 0.2
            """,
            "salon.yaml:6: agents.coder.backend.temprature: Extra inputs are not permitted "
            "(did you mean 'temperature'?)",
            id="typo-in-backend",
        ),
        pytest.param(
            """\
            homeserver:
              url: http://127.0.0.1:8008
              server_name: localhost
              mode: appservice
            agents:
              echo: {backend: echo}
            """,
            "salon.yaml:4: homeserver.mode: appservice mode is not available yet",
            id="appservice-mode",
        ),
        pytest.param(
            """\
            agents:
              echo: {backend: echo}
            store:
              url: postgresql://localhost/salon
            """,
            "salon.yaml:4: store.url: PostgreSQL is not yet supported",
            id="postgresql-url",
        ),
        pytest.param(
            """\
            agents:
              echo: {backend: echo}
              coder:
                backend: echo
                localpart: salon_echo
            """,
            "salon.yaml:5: agents.coder.localpart: localpart 'salon_echo' is already used by "
            "agent 'echo'",
            id="duplicate-localparts",
        ),
        pytest.param(
            """\
            access:
              allowed_users:
                - "@*:localhost"
                - bob
            agents:
              echo: {backend: echo}
            """,
            "salon.yaml:4: access.allowed_users.1: 'bob' is not a user id glob",
            id="list-index",
        ),
        pytest.param(
            """\
            agents:
              echo:
                backend: echo
                can_delegate_to: [echo2]
              echo2: {backend: echo}
              coder:
                backend: echo
                can_delegate_to:
                  - echo
                  - nobody
            """,
            "salon.yaml:10: agents.coder.can_delegate_to.1: unknown agent 'nobody'",
            id="can-delegate-to",
        ),
        pytest.param(
            """\
            agents:
              coder:
                backend:
                  type: openai
                  model: ${SALON_TEST_UNSET_MODEL}
            """,
            "salon.yaml:5: agents.coder.backend.model: environment variable "
            "'SALON_TEST_UNSET_MODEL' is not set",
            id="missing-env-var",
        ),
        pytest.param(
            """\
            homeserver:
              url: http://127.0.0.1:8008
              server_name: localhost
              registration_shared_secret_env: SALON_TEST_UNSET_SECRET
            agents:
              echo: {backend: echo}
            """,
            "salon.yaml:4: homeserver.registration_shared_secret_env: environment variable "
            "'SALON_TEST_UNSET_SECRET' is not set",
            id="missing-secret-env",
        ),
        pytest.param(
            """\
            agents:
              echo:
                backend: echo
                persona: missing/SOUL.md
            """,
            "salon.yaml:4: agents.echo.persona: persona file not found",
            id="missing-persona-file",
        ),
        pytest.param(
            """\
            agents:
              echo: {backend: echo
              other: 1
            """,
            "salon.yaml:3:",
            id="yaml-syntax-error",
        ),
        pytest.param("", "salon.yaml: the config file is empty", id="empty-file"),
        pytest.param("# nothing\n", "salon.yaml: the config file is empty", id="only-comments"),
        pytest.param("- a\n- b\n", "salon.yaml: expected a mapping", id="not-a-mapping"),
    ],
)
def test_error_names_file_line_and_key(in_tmp: Path, text: str, expected: str) -> None:
    message = str(load_error(in_tmp, text))
    assert expected in message, message


def test_several_errors_one_line_each_in_file_order(in_tmp: Path) -> None:
    message = str(
        load_error(
            in_tmp,
            """\
            locale: de
            agents:
              coder:
                backend: {type: echo, delay_s: -1}
            heartbeat: {interval_s: 10, ttl_s: 5}
            """,
        )
    )
    lines = message.splitlines()
    assert len(lines) == 3, message
    assert lines[0].startswith("salon.yaml:1: locale: ")
    assert lines[1].startswith("salon.yaml:4: agents.coder.backend.delay_s: ")
    assert lines[2].startswith("salon.yaml:5: heartbeat.ttl_s: ")


def test_heartbeat_cross_check_points_at_field(in_tmp: Path) -> None:
    message = str(load_error(in_tmp, MINIMAL + "heartbeat:\n  interval_s: 10\n  ttl_s: 5\n"))
    assert "salon.yaml:7: heartbeat.ttl_s: must be greater than interval_s" in message


def test_missing_file_and_directory(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found") as info:
        load_config("nope.yaml")
    assert info.value.path == "nope.yaml"
    (in_tmp / "adir").mkdir()
    with pytest.raises(ConfigError, match="adir"):
        load_config("adir")


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


def test_parse_config_source_name() -> None:
    with pytest.raises(ConfigError, match=r"^<string>:1: agnets: ") as info:
        parse_config("agnets: {}\nagents: {e: {backend: echo}}\n")
    assert info.value.path == "<string>"


_YAMLISH = st.text(alphabet=st.sampled_from(list("ab01:-_ {}[],'\"#&*!|>?%@$\n\t.~")), max_size=120)


@st.composite
def _mutated_example(draw: st.DrawFn) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 20))
        text = text[:at] + draw(_YAMLISH) + text[at + cut :]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_YAMLISH, st.text(max_size=80), _mutated_example()))
def test_garbage_loads_or_raises_config_error(text: str) -> None:
    try:
        parse_config(text, source="fuzz.yaml", base_dir=Path(__file__).parent)
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")


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
