"""Agents, teams and peers, and the limits on delegation between them."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from salon.config.backends import BackendConfig
from salon.config.base import (
    ConfigModel,
    ConfigProblems,
    Label,
    Loc,
    Localpart,
    PositiveFloat,
    UserIdStr,
)
from salon.config.deployment import IdentityCredentials
from salon.ids import AgentId

_CRON_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Six fields: seconds come first (``*/2 * * * * *`` is every two seconds), as in Quartz.
CRON_SECONDS_FIRST = True


def cron_schedule_problem(schedule: str) -> str | None:
    """Why ``schedule`` is not a usable cron schedule (None: it is)."""
    expr = " ".join(schedule.split())
    if expr.startswith("@"):
        if expr not in _CRON_MACROS:
            return f"unknown schedule {schedule!r} (macros: {', '.join(_CRON_MACROS)})"
    elif len(expr.split()) not in (5, 6):
        return (
            f"schedule {schedule!r} has {len(expr.split())} fields: use 5 (minute hour"
            " day-of-month month day-of-week) or 6 (seconds first)"
        )
    try:
        croniter(expr, time.time(), second_at_beginning=CRON_SECONDS_FIRST).get_next(float)
    except CroniterBadDateError:
        return f"schedule {schedule!r} never comes (no date matches it)"
    except CroniterError as e:
        return f"invalid schedule {schedule!r}: {e}"
    return None


def _approve_pattern(value: str) -> str:
    if not re.fullmatch(r"\*|delegate|[A-Za-z0-9_-]+\.(\*|[A-Za-z0-9_.-]+)", value):
        raise ValueError(f"{value!r}: expected delegate, <server>.<tool>, <server>.* or *")
    return value


ApprovePattern = Annotated[str, AfterValidator(_approve_pattern)]


class CronJobConfig(ConfigModel):
    """One scheduled job of an agent: at each time of ``schedule`` (in ``timezone``)
    the agent runs ``prompt`` as a turn and posts the answer in ``room``."""

    id: str
    schedule: str
    prompt: Annotated[str, Field(min_length=1)]
    # A room alias (`#news:example.org`, or `#news` on this homeserver) or a room id
    # (`!abc:example.org`); default: the agent's own room.
    room: str | None = None
    timezone: str = "UTC"
    # Times missed while the gateway was down: `latest` runs the most recent one once
    # (never a burst), `none` runs none of them.
    catch_up: Literal["latest", "none"] = "latest"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _CRON_ID_RE.match(value):
            raise ValueError(
                f"invalid job id {value!r}: use 1-64 of A-Z, a-z, 0-9, '_', '.' and '-',"
                " starting with a letter or digit"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        problem = cron_schedule_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return " ".join(value.split())

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. 'UTC', 'Europe/Berlin')") from None
        return value

    @field_validator("room")
    @classmethod
    def _room(cls, value: str | None) -> str | None:
        if value is not None and not (value[:1] in "#!" and len(value) > 1 and " " not in value):
            raise ValueError(
                f"{value!r} is not a room alias ('#name' or '#name:server') or room id ('!id')"
            )
        return value


class AgentConfig(ConfigModel):
    """One agent: persona, backend and (optionally) its Matrix identity."""

    label: Label = None
    description: str = ""
    persona: str | None = None
    localpart: Localpart | None = None
    backend: BackendConfig
    matrix: IdentityCredentials | None = None
    can_delegate_to: list[str] | None = None
    # Calls that need a person's OK first (see ApprovalConfig); None: approval.default.
    approve: list[ApprovePattern] | None = None
    # History sent to the model is trimmed to this many (estimated) tokens.
    context_tokens: Annotated[int, Field(ge=256)] = 8000
    # Scheduled prompts (see CronJobConfig); each id once per agent.
    cron: list[CronJobConfig] = Field(default_factory=list)
    # The id is the key under `agents:`; SalonConfig fills it in.
    _id: str = PrivateAttr(default="")

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_shorthand(cls, value: Any) -> Any:
        # `backend: echo` is shorthand for `backend: {type: echo}`.
        return {"type": value} if isinstance(value, str) else value

    @field_validator("cron")
    @classmethod
    def _unique_job_ids(cls, jobs: list[CronJobConfig]) -> list[CronJobConfig]:
        seen: dict[str, int] = {}
        problems: list[tuple[Loc, str]] = []
        for i, job in enumerate(jobs):
            if job.id in seen:
                msg = f"duplicate job id {job.id!r} (also cron.{seen[job.id]})"
                problems.append(((i, "id"), msg))
            seen.setdefault(job.id, i)
        if problems:
            raise ConfigProblems(problems)
        return jobs

    @property
    def id(self) -> AgentId:
        """The agent's id (its key under ``agents:``); empty outside a SalonConfig."""
        return AgentId(self._id)

    @property
    def display_label(self) -> str:
        """The label shown to people: ``label``, else the id title-cased."""
        return self.label or self._id.title()


class PeerConfig(ConfigModel):
    """An agent hosted by another gateway of this deployment, pinned by its user id.

    Pinned, not derived from the naming pattern: otherwise whoever registered
    ``@salon_<peer>`` first would be trusted as that peer.
    """

    user_id: UserIdStr
    label: Label = None
    description: str = ""
    # Which agents of this gateway the peer may delegate tasks to: none unless listed
    # (fail closed); ``["*"]``: all of them.
    may_task: list[str] = Field(default_factory=list)
    # The id is the key under `peers:`; SalonConfig fills it in.
    _id: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _user_id_shorthand(cls, value: Any) -> Any:
        # `researcher: "@salon_researcher:example.org"` is shorthand for `{user_id: ...}`.
        return {"user_id": value} if isinstance(value, str) else value

    @property
    def id(self) -> AgentId:
        """The peer agent's id (its key under ``peers:``); empty outside a SalonConfig."""
        return AgentId(self._id)

    def may_task_agent(self, agent_id: str) -> bool:
        """Whether this peer may delegate a task to our agent ``agent_id``."""
        return "*" in self.may_task or agent_id in self.may_task

    @property
    def display_label(self) -> str:
        """The label shown to people: ``label``, else the id title-cased."""
        return self.label or self._id.title()


def peer_list_error(value: Any, agent_localpart: str, server_name: str) -> ValueError | None:
    """The error for the old ``peers: [id, ...]`` form, showing the new one; else None."""
    if not isinstance(value, list):
        return None
    ids = [v for v in value if isinstance(v, str)] or ["researcher"]
    example = ", ".join(
        f'{p}: "@{agent_localpart.replace("{id}", p)}:{server_name}"' for p in ids[:3]
    )
    return ValueError(
        "a list of agent ids is no longer accepted: peers are pinned by their full "
        f"user id, e.g. peers: {{{example}}}"
    )


class TeamConfig(ConfigModel):
    """A team: its own Matrix user and room; ``coordinate``: the lead delegates parts to the
    members and answers; ``collaborate``: every member answers, then the lead summarises."""

    label: Label = None
    description: str = ""
    agents: Annotated[list[str], Field(min_length=1)]
    mode: Literal["coordinate", "collaborate"] = "coordinate"
    lead: str | None = None  # default: the first of `agents`


class DelegationConfig(ConfigModel):
    """Delegation between agents."""

    hop_limit: Annotated[int, Field(ge=1, le=15)] = 3
    deadline_s: PositiveFloat = 300


class ApprovalConfig(ConfigModel):
    """Tool calls that wait for a person's OK in the room: ``default`` applies to every
    agent without its own ``approve:`` list; a request unanswered for ``timeout_s``
    is refused."""

    default: list[ApprovePattern] = Field(default_factory=list)
    timeout_s: PositiveFloat = 300
