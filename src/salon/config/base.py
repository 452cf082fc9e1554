"""What every part of the schema shares: the strict base model, value types, problems.

Cross-field checks raise :class:`ConfigProblems`, which carries a key path per
problem (relative to the model that raised it) so the loader can point at the
offending line instead of at the top of the section.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

AGENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
AGENT_ID_HINT = "use 1-32 of a-z, 0-9, '_' and '-', starting with a letter or digit"

Loc = tuple[str | int, ...]


class ConfigProblems(ValueError):
    """Problems found by a cross-field check, each with the key path it concerns."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))


class ConfigModel(BaseModel):
    """Base of every config model: frozen, and unknown keys are errors."""

    # forbid: a typo such as `agnets:` must fail loudly instead of being ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


OPENAI_KEY_ENV = "OPENAI_API_KEY"


def is_openai_url(url: str) -> bool:
    """Whether ``url`` is OpenAI's own API (``https://api.openai.com/...``)."""
    parts = urlsplit(url.strip())
    return parts.scheme == "https" and parts.hostname == "api.openai.com"


def with_key_env_default(data: Any, base_url_default: str | None) -> Any:
    """``data`` (a raw config mapping) with ``api_key_env`` defaulted by where the key goes.

    Only OpenAI's own API (or no ``base_url`` yet) gets ``OPENAI_API_KEY`` unasked: a
    LAN or third-party endpoint must never receive a person's OpenAI key. Any other
    endpoint gets a key only when the config names its variable.
    """
    if not isinstance(data, dict) or "api_key_env" in data:
        return data
    url = data.get("base_url", base_url_default)
    if url is None or (isinstance(url, str) and is_openai_url(url)):
        return {**data, "api_key_env": OPENAI_KEY_ENV}
    return data


def _matching(regex: str, what: str) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


# Characters the Matrix spec allows in a user localpart.
_LOCALPART_RE = re.compile(r"^[a-z0-9._=/+-]+$")
_LOCALPART_HINT = "a valid localpart (use a-z, 0-9 and ._=/+-)"


def _id_pattern(value: str) -> str:
    if "{id}" not in value:
        raise ValueError(f"pattern {value!r} must contain '{{id}}'")
    if not _LOCALPART_RE.match(value.replace("{id}", "x")):
        raise ValueError(f"pattern {value!r} does not make {_LOCALPART_HINT}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Localpart = Annotated[str, _matching(_LOCALPART_RE.pattern, _LOCALPART_HINT)]
IdPattern = Annotated[str, AfterValidator(_id_pattern)]
ServerName = Annotated[
    str, _matching(r"^[A-Za-z0-9.\-:\[\]]+$", "a server name like 'example.org'")
]
# Exact ids only for admins: a glob in the admin list is too easy to get wrong.
UserIdStr = Annotated[
    str, _matching(r"^@[^:\s*?\[]+:[^\s*?\[]+$", "a full user id like '@alice:example.org'")
]
UserGlob = Annotated[str, _matching(r"^@[^:\s]*:\S+$", "a user id glob like '@*:example.org'")]
EntryPoint = Annotated[
    str,
    _matching(
        r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$",
        "an entry point like 'package.module:factory'",
    ),
]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
Label = Annotated[str | None, Field(min_length=1)]
