"""A clock agent: the current time in a city or time zone.

Shows a ``python`` backend with options and an injectable dependency (the
clock), so its answers are deterministic under test. ``time`` → UTC (or the
``default_zone`` option), ``what time is it in Tokyo?`` → Tokyo,
``time in Europe/Paris`` → that zone, ``time in London and New York`` → both.

Places are looked up in a small table of common city names, then among the
IANA zones known to :mod:`zoneinfo` (``Europe/Paris``, or just ``Kolkata``).
The ``cities`` option adds names: ``{cities: {hq: America/Chicago}}``. Without
a time zone database on the system (some slim images, Windows) only UTC works
and the reply says to install ``tzdata``.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from salon.agents.backend import TurnRequest
from salon.demo.common import nothing_for_me, strip_mentions

HELP = "I tell the time: try `time`, `what time is it in Tokyo?` or `time in Europe/Paris`"

# Common names people type → IANA zones (lowercase keys).
CITIES: dict[str, str] = {
    "amsterdam": "Europe/Amsterdam",
    "athens": "Europe/Athens",
    "auckland": "Pacific/Auckland",
    "bangalore": "Asia/Kolkata",
    "bangkok": "Asia/Bangkok",
    "beijing": "Asia/Shanghai",
    "berlin": "Europe/Berlin",
    "boston": "America/New_York",
    "buenos aires": "America/Argentina/Buenos_Aires",
    "cairo": "Africa/Cairo",
    "chicago": "America/Chicago",
    "delhi": "Asia/Kolkata",
    "denver": "America/Denver",
    "dubai": "Asia/Dubai",
    "dublin": "Europe/Dublin",
    "helsinki": "Europe/Helsinki",
    "hong kong": "Asia/Hong_Kong",
    "honolulu": "Pacific/Honolulu",
    "istanbul": "Europe/Istanbul",
    "jakarta": "Asia/Jakarta",
    "johannesburg": "Africa/Johannesburg",
    "kyiv": "Europe/Kyiv",
    "kiev": "Europe/Kyiv",
    "la": "America/Los_Angeles",
    "lagos": "Africa/Lagos",
    "lisbon": "Europe/Lisbon",
    "london": "Europe/London",
    "los angeles": "America/Los_Angeles",
    "madrid": "Europe/Madrid",
    "melbourne": "Australia/Melbourne",
    "mexico city": "America/Mexico_City",
    "moscow": "Europe/Moscow",
    "mumbai": "Asia/Kolkata",
    "nairobi": "Africa/Nairobi",
    "new york": "America/New_York",
    "nyc": "America/New_York",
    "paris": "Europe/Paris",
    "reykjavik": "Atlantic/Reykjavik",
    "rome": "Europe/Rome",
    "san francisco": "America/Los_Angeles",
    "sao paulo": "America/Sao_Paulo",
    "seattle": "America/Los_Angeles",
    "seoul": "Asia/Seoul",
    "shanghai": "Asia/Shanghai",
    "singapore": "Asia/Singapore",
    "stockholm": "Europe/Stockholm",
    "sydney": "Australia/Sydney",
    "tokyo": "Asia/Tokyo",
    "toronto": "America/Toronto",
    "vancouver": "America/Vancouver",
    "vienna": "Europe/Vienna",
    "warsaw": "Europe/Warsaw",
    "zurich": "Europe/Zurich",
}
_UTC_NAMES = frozenset({"utc", "gmt", "z", "zulu"})
_REGIONS = (
    "Africa/", "America/", "Antarctica/", "Asia/", "Atlantic/", "Australia/", "Europe/",
    "Indian/", "Pacific/",
)  # fmt: skip
MAX_PLACES = 5
MAX_PLACE_WORDS = 4

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_TRIGGER = re.compile(r"\b(?:time|clock|date|day|hour|o'clock|timezone|zone)s?\b", re.I)
_WORD = re.compile(r"[\w/+'.-]+")
_IN = re.compile(r"\b(?:in|for)\s+", re.I)
_JOINER = re.compile(r"\s*(?:,\s*(?:and\b)?|&|\band\b)\s*", re.I)


@functools.cache
def _zone_index() -> dict[str, str]:
    """Lowercase IANA keys, and their last parts with spaces (``kolkata``), → the key."""
    index: dict[str, str] = {}
    for key in sorted(zoneinfo.available_timezones()):
        index.setdefault(key.lower(), key)
        if key.startswith(_REGIONS):
            index.setdefault(key.rsplit("/", 1)[1].lower().replace("_", " "), key)
    return index


@dataclass(frozen=True)
class Place:
    """A place someone asked about: the name they used, and its zone."""

    name: str
    zone: str  # an IANA key, or "UTC"


def _clean(word: str) -> str:
    return word.strip(".,;:!?'\"()").lower()


def _as_zone(phrase: str, extra: Mapping[str, str]) -> str | None:
    """The zone a place name stands for, or None."""
    name = " ".join(_clean(w) for w in phrase.split()).strip()
    if not name:
        return None
    if name in _UTC_NAMES:
        return "UTC"
    found = extra.get(name) or CITIES.get(name)
    if found:
        return found
    return _zone_index().get(name) or _zone_index().get(name.replace(" ", "_"))


class Clock:
    """The ``python`` backend (``entry: salon.demo.clock:Clock``).

    Options: ``default_zone`` (for a bare ``time``; default UTC) and ``cities``
    (extra names → IANA zones). ``now`` (keyword only, for tests) returns the
    current time as an aware datetime.
    """

    def __init__(
        self,
        agent_id: str,
        options: Mapping[str, Any],
        *,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.now = now or (lambda: datetime.now(UTC))
        self.default_zone = str(options.get("default_zone") or "UTC")
        if _load_zone(self.default_zone) is None:
            raise ValueError(f"default_zone {self.default_zone!r} is not a known time zone")
        cities = options.get("cities") or {}
        self.cities = {str(k).lower(): str(v) for k, v in dict(cities).items()}

    async def stream(self, request: TurnRequest) -> AsyncIterator[str]:
        """One reply: the time in each place asked about, or why not."""
        yield self.answer(request.text)

    def answer(self, text: str) -> str:
        """The reply to ``text`` (never raises)."""
        text = strip_mentions(text)
        places, unknown = self.places(text)
        if not places:
            whole = _as_zone(text, self.cities)  # `@Clock Tokyo`
            if whole is not None:
                places = [Place(" ".join(w.strip("?!.,") for w in text.split()), whole)]
        if not places:
            if not _TRIGGER.search(text):
                return nothing_for_me(HELP)
            if unknown:
                return (
                    f"I don't know the time zone of {unknown!r}. Try a city (Tokyo, New York) "
                    "or a zone such as Europe/Paris."
                )
            places = [Place(self.default_zone, self.default_zone)]
        now = self.now()
        return "\n".join(self.describe(place, now) for place in places)

    def places(self, text: str) -> tuple[list[Place], str | None]:
        """The places named after ``in``/``for`` (and zone keys anywhere); and the first
        phrase after ``in`` that named no known place."""
        found: list[Place] = []
        unknown: str | None = None
        for match in _IN.finditer(text):
            rest = text[match.end() :]
            while len(found) < MAX_PLACES:
                place, used = self._longest_place(rest)
                if place is None:
                    if not found and unknown is None:
                        unknown = " ".join(_WORD.findall(rest)[:3]).strip("?!.,") or None
                    break
                found.append(place)
                joiner = _JOINER.match(rest, used)
                if joiner is None:
                    break
                rest = rest[joiner.end() :]
        for word in _WORD.findall(text):
            if "/" in word and (zone := _as_zone(word, self.cities)) is not None:
                found.append(Place(word.strip("?!.,"), zone))
        unique = list({place.zone: place for place in found}.values())
        return unique[:MAX_PLACES], unknown

    def _longest_place(self, text: str) -> tuple[Place | None, int]:
        """The place the first words of ``text`` name (the most words that do), and where
        it ends in ``text``."""
        words = list(_WORD.finditer(text))
        for n in range(min(MAX_PLACE_WORDS, len(words)), 0, -1):
            phrase = " ".join(w.group() for w in words[:n])
            zone = _as_zone(phrase, self.cities)
            if zone is not None:
                name = " ".join(w.group().strip("?!.,;:") for w in words[:n])
                return Place(name, zone), words[n - 1].end()
        return None, 0

    def describe(self, place: Place, now: datetime) -> str:
        """``It is 21:04 on Tuesday 14 May 2024 in Tokyo (Asia/Tokyo, UTC+09:00).``

        Day and month names are English whatever the process locale.
        """
        zone = _load_zone(place.zone)
        if zone is None:
            return (
                f"I cannot tell the time in {place.name}: this system has no time zone "
                "database (install the `tzdata` package)."
            )
        local = now.astimezone(zone)
        day, month = _DAYS[local.weekday()], _MONTHS[local.month - 1]
        when = f"{local:%H:%M} on {day} {local.day} {month} {local.year}"
        if place.zone == "UTC":
            return f"It is {when} (UTC)."
        offset = local.strftime("%z")
        offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        if place.name.lower() == place.zone.lower():
            return f"It is {when} in {place.zone} ({offset})."
        return f"It is {when} in {place.name} ({place.zone}, {offset})."


def _load_zone(key: str) -> tzinfo | None:
    if key.upper() == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
