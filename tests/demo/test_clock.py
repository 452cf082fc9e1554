"""The demo clock: cities and zones, daylight saving time, unknown places, a fixed clock."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime

import pytest

from salon._exceptions import ConfigError
from salon.agents.python_backend import PythonPluginBackend
from salon.config.models import PythonBackend
from salon.demo import clock as clock_module
from salon.demo.clock import Clock
from salon.demo.common import is_nothing_for_me

from .conftest import SUMMER_NOON, WINTER_NOON, reply, request


def at(now: datetime, **options: object) -> Clock:
    return Clock("clock", options, now=lambda: now)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("time", "It is 12:00 on Monday 15 January 2024 (UTC)."),
        ("what time is it?", "It is 12:00 on Monday 15 January 2024 (UTC)."),
        (
            "what time is it in Tokyo?",
            "It is 21:00 on Monday 15 January 2024 in Tokyo (Asia/Tokyo, UTC+09:00).",
        ),
        (
            "time in Europe/Paris",
            "It is 13:00 on Monday 15 January 2024 in Europe/Paris (UTC+01:00).",
        ),
        (
            "@Clock what's the date in sydney",
            "It is 23:00 on Monday 15 January 2024 in sydney (Australia/Sydney, UTC+11:00).",
        ),
        (  # a zone's last part works as a city name
            "time in Kolkata",
            "It is 17:30 on Monday 15 January 2024 in Kolkata (Asia/Kolkata, UTC+05:30).",
        ),
        (  # a bare place
            "Tokyo",
            "It is 21:00 on Monday 15 January 2024 in Tokyo (Asia/Tokyo, UTC+09:00).",
        ),
        ("time in UTC", "It is 12:00 on Monday 15 January 2024 (UTC)."),
    ],
)
def test_time_in_a_place(text: str, expected: str) -> None:
    assert at(WINTER_NOON).answer(text) == expected


def test_daylight_saving_time_follows_the_date() -> None:
    assert "14:00" in at(SUMMER_NOON).answer("time in Paris")
    assert "(Europe/Paris, UTC+02:00)" in at(SUMMER_NOON).answer("time in Paris")
    assert "(America/New_York, UTC-05:00)" in at(WINTER_NOON).answer("time in New York")
    assert "(America/New_York, UTC-04:00)" in at(SUMMER_NOON).answer("time in New York")


def test_several_places_one_line_each() -> None:
    lines = at(WINTER_NOON).answer("time in London and New York, and Tokyo").splitlines()
    assert [line.split(" in ")[1].split(" (")[0] for line in lines] == [
        "London",
        "New York",
        "Tokyo",
    ]


def test_the_place_in_a_longer_message() -> None:
    # What a member of a collaborate team gets: the person's whole message.
    text = "@Desk what is 2^10 and what time is it in London?"
    assert at(WINTER_NOON).answer(text) == (
        "It is 12:00 on Monday 15 January 2024 in London (Europe/London, UTC+00:00)."
    )


def test_unknown_place_says_so() -> None:
    out = at(WINTER_NOON).answer("what time is it in Atlantis?")
    assert out.startswith("I don't know the time zone of 'Atlantis'")
    assert "Europe/Paris" in out  # a hint of what works


@pytest.mark.parametrize("text", ["hello", "what is 6*7?", "@Desk what is 6*7 in total?"])
def test_not_about_time_is_not_for_me(text: str) -> None:
    assert is_nothing_for_me(at(WINTER_NOON).answer(text))


def test_options_default_zone_and_cities() -> None:
    clock = at(WINTER_NOON, default_zone="Asia/Tokyo", cities={"HQ": "America/Chicago"})
    assert clock.answer("time") == (
        "It is 21:00 on Monday 15 January 2024 in Asia/Tokyo (UTC+09:00)."
    )
    assert "06:00" in clock.answer("time at the office in HQ")


def test_a_bad_default_zone_fails_at_start_up() -> None:
    config = PythonBackend(
        type="python", entry="salon.demo.clock:Clock", options={"default_zone": "Mars/Base"}
    )
    with pytest.raises(ConfigError, match="Mars/Base"):
        PythonPluginBackend(config, agent_id="clock")


def test_without_a_time_zone_database_utc_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(key: str) -> zoneinfo.ZoneInfo:
        raise zoneinfo.ZoneInfoNotFoundError(key)

    monkeypatch.setattr(clock_module.zoneinfo, "ZoneInfo", missing)
    clock = at(WINTER_NOON)
    assert clock.answer("time") == "It is 12:00 on Monday 15 January 2024 (UTC)."
    assert "tzdata" in clock.answer("time in Tokyo")


async def test_backend_uses_the_injected_clock() -> None:
    assert await reply(at(SUMMER_NOON), request("time in Tokyo")) == (
        "It is 21:00 on Monday 15 July 2024 in Tokyo (Asia/Tokyo, UTC+09:00)."
    )


def test_real_clock_by_default() -> None:
    before = datetime.now(UTC)
    out = Clock("clock", {}).answer("time")
    after = datetime.now(UTC)
    assert out.endswith("(UTC).")
    assert f"{before:%H:%M} on" in out or f"{after:%H:%M} on" in out
