"""Loading salon.yaml: errors that point at the file, line and key; garbage raises
nothing but ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.config.test_loader import EXAMPLE, MINIMAL, load_error

from salon._exceptions import ConfigError
from salon.config import load_config, parse_config


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


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
              mode: bridge
            agents:
              echo: {backend: echo}
            """,
            "salon.yaml:4: homeserver.mode: Input should be 'client' or 'appservice'",
            id="unknown-mode",
        ),
        pytest.param(
            """\
            agents:
              echo: {backend: echo}
            store:
              url: "postgresql://"
            """,
            "salon.yaml:4: store.url: a postgresql:// URL needs at least a host or a database",
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
