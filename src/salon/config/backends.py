"""What an agent's ``backend:`` can be: one model per ``type``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from salon.config.base import (
    ConfigModel,
    EntryPoint,
    HttpUrl,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    with_key_env_default,
)

OPENAI_URL = "https://api.openai.com/v1"


class EchoBackend(ConfigModel):
    """Offline backend that repeats the message; for demos and tests."""

    type: Literal["echo"]
    prefix: str = ""
    delay_s: NonNegativeFloat = 0
    fail_on: Annotated[str | None, Field(min_length=1)] = None


class OpenAIBackend(ConfigModel):
    """Any OpenAI-compatible chat-completions endpoint."""

    type: Literal["openai"]
    base_url: HttpUrl = OPENAI_URL
    model: Annotated[str, Field(min_length=1)]
    # The variable holding the key. Unset: OPENAI_API_KEY for OpenAI's own URL, none
    # for any other endpoint (which then gets a placeholder key, never a real one).
    api_key_env: str | None = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    # A cap on each reply's size; null sends none (for servers that reject the parameter).
    max_tokens: Annotated[int | None, Field(gt=0)] = 2048
    timeout_s: PositiveFloat = 60
    max_retries: Annotated[int, Field(ge=0)] = 3
    # First wait before a retry of a transient error; doubles on each further retry.
    retry_backoff_s: NonNegativeFloat = 0.5
    # Rounds of ``delegate`` tool calls one turn may make before it fails.
    max_tool_rounds: PositiveInt = 4
    # Calls beyond this in one round are not run; the model gets an error result for each.
    max_tool_calls_per_round: PositiveInt = 8
    # The model takes images: files people send that are images go to it as image
    # content parts. Off: the model gets a one-line note for each file instead.
    images: bool = False

    @model_validator(mode="before")
    @classmethod
    def _key_only_for_openai(cls, data: Any) -> Any:
        return with_key_env_default(data, OPENAI_URL)


class HttpBackend(ConfigModel):
    """An upstream agent service that receives turns over HTTP."""

    type: Literal["http"]
    base_url: HttpUrl
    # Limit on connecting, on waiting for the reply, and on each pause inside a stream.
    timeout_s: PositiveFloat = 120
    headers: dict[str, str] = Field(default_factory=dict)
    token_env: str | None = None
    # False: ask for a JSON reply only (no ``text/event-stream`` in ``Accept``).
    stream: bool = True


class PythonBackend(ConfigModel):
    """An in-process backend built by a ``pkg.mod:factory`` entry point."""

    type: Literal["python"]
    entry: EntryPoint
    options: dict[str, Any] = Field(default_factory=dict)


class TeamBackend(ConfigModel):
    """A team answers through its members, over delegation (see ``teams:``)."""

    type: Literal["team"]
    mode: Literal["coordinate", "collaborate"] = "coordinate"
    lead: str
    members: Annotated[list[str], Field(min_length=1)]


BackendConfig = Annotated[
    EchoBackend | OpenAIBackend | HttpBackend | PythonBackend | TeamBackend,
    Field(discriminator="type"),
]
