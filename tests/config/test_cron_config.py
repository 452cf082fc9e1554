"""`cron:` entries of an agent: checked at load time, errors at the line and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from salon._exceptions import ConfigError
from salon.config import load_config
from salon.config.agents import cron_schedule_problem


def _write(tmp_path: Path, jobs: str) -> Path:
    path = tmp_path / "salon.yaml"
    text = "agents:\n  coder:\n    backend: echo\n    cron:\n" + textwrap.indent(
        textwrap.dedent(jobs), "      "
    )
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, jobs: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, jobs))
    return str(info.value)


def test_a_job_with_defaults(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            """\
            - {id: tick, schedule: "*/2  * * * * *", prompt: "What time is it?"}
            - id: standup
              schedule: "0 9 * * mon-fri"
              prompt: "Plan the day"
              room: "#team:example.org"
              timezone: Europe/Berlin
              catch_up: none
            """,
        )
    )
    tick, standup = config.agents["coder"].cron
    assert (tick.id, tick.schedule, tick.prompt) == ("tick", "*/2 * * * * *", "What time is it?")
    assert (tick.room, tick.timezone, tick.catch_up) == (None, "UTC", "latest")
    assert (standup.room, standup.timezone, standup.catch_up) == (
        "#team:example.org",
        "Europe/Berlin",
        "none",
    )
    assert load_config(_write(tmp_path, "[]\n")).agents["coder"].cron == []


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "out of range"),
        ("0 0 31 2 *", "never comes"),
        ("@reboot", "unknown schedule"),
        ("every minute", "has 2 fields"),
    ],
)
def test_a_bad_schedule_is_refused_at_its_line(
    tmp_path: Path, schedule: str, expected: str
) -> None:
    message = _error(
        tmp_path,
        f"""\
        - {{id: ok, schedule: "* * * * *", prompt: fine}}
        - {{id: bad, schedule: "{schedule}", prompt: hi}}
        """,
    )
    assert "salon.yaml:6: agents.coder.cron.1.schedule:" in message
    assert expected in message


@pytest.mark.parametrize("schedule", ["* * * * *", "*/2 * * * * *", "0 9 * * 1-5", "@daily"])
def test_good_schedules(schedule: str) -> None:
    assert cron_schedule_problem(schedule) is None


def test_time_zone_room_catch_up_and_id_are_checked(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        """\
        - id: a
          schedule: "* * * * *"
          prompt: hi
          timezone: Mars/Olympus
        - {id: b, schedule: "* * * * *", prompt: hi, room: lobby}
        - {id: c, schedule: "* * * * *", prompt: hi, catch_up: all}
        - {id: "d:e", schedule: "* * * * *", prompt: hi}
        - {id: f, schedule: "* * * * *", prompt: ""}
        """,
    )
    lines = message.splitlines()
    assert "salon.yaml:8: agents.coder.cron.0.timezone: unknown time zone 'Mars/Olympus'" in (
        message
    )
    assert "salon.yaml:9: agents.coder.cron.1.room: 'lobby' is not a room alias" in message
    assert "salon.yaml:10: agents.coder.cron.2.catch_up: Input should be 'latest' or 'none'" in (
        message
    )
    assert "salon.yaml:11: agents.coder.cron.3.id: invalid job id 'd:e'" in message
    assert "salon.yaml:12: agents.coder.cron.4.prompt:" in message
    assert len(lines) == 5


def test_job_ids_are_unique_per_agent(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        """\
        - {id: news, schedule: "* * * * *", prompt: one}
        - {id: other, schedule: "* * * * *", prompt: two}
        - {id: news, schedule: "@daily", prompt: three}
        """,
    )
    assert message.endswith(
        "salon.yaml:7: agents.coder.cron.2.id: duplicate job id 'news' (also cron.0)"
    )


def test_the_same_job_id_on_two_agents_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            agents:
              a:
                backend: echo
                cron: [{id: news, schedule: "@hourly", prompt: hi}]
              b:
                backend: echo
                cron: [{id: news, schedule: "@hourly", prompt: hi}]
            """
        ),
        encoding="utf-8",
    )
    config = load_config(path)
    assert [j.id for j in config.agents["a"].cron] == [j.id for j in config.agents["b"].cron]


def test_unknown_keys_in_a_job_are_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, '- {id: a, schedule: "@daily", prompt: hi, tz: UTC}\n')
    assert "agents.coder.cron.0.tz: Extra inputs are not permitted" in message
