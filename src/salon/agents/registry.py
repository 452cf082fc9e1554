"""Build an agent's backend from its config."""

from __future__ import annotations

from salon._exceptions import ConfigError
from salon.agents.backend import Backend
from salon.agents.echo import EchoBackend
from salon.config.models import AgentConfig
from salon.config.models import EchoBackend as EchoConfig


def build_backend(agent: AgentConfig) -> Backend:
    """The backend object for ``agent``; unsupported types fail at start-up, by key."""
    cfg = agent.backend
    if isinstance(cfg, EchoConfig):
        return EchoBackend(prefix=cfg.prefix, delay_s=cfg.delay_s, fail_on=cfg.fail_on)
    raise ConfigError(
        f"agents.{agent.id}.backend.type: backend {cfg.type!r} is not available in this "
        "version of Salon (available: echo)"
    )
