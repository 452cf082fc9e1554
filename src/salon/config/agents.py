"""Agents, teams and peers, and the limits on delegation between them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from salon.config.backends import BackendConfig
from salon.config.base import ConfigModel, Label, Localpart, PositiveFloat, UserIdStr
from salon.config.deployment import IdentityCredentials
from salon.ids import AgentId


class AgentConfig(ConfigModel):
    """One agent: persona, backend and (optionally) its Matrix identity."""

    label: Label = None
    description: str = ""
    persona: str | None = None
    localpart: Localpart | None = None
    backend: BackendConfig
    matrix: IdentityCredentials | None = None
    can_delegate_to: list[str] | None = None
    # History sent to the model is trimmed to this many (estimated) tokens.
    context_tokens: Annotated[int, Field(ge=256)] = 8000
    # The id is the key under `agents:`; SalonConfig fills it in.
    _id: str = PrivateAttr(default="")

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_shorthand(cls, value: Any) -> Any:
        # `backend: echo` is shorthand for `backend: {type: echo}`.
        return {"type": value} if isinstance(value, str) else value

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
