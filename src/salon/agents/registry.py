"""Build an agent's backend from its config, and close it again."""

from __future__ import annotations

import inspect

from salon.agents.backend import Backend
from salon.agents.echo import EchoBackend
from salon.agents.http_backend import HttpAgentBackend
from salon.agents.openai_backend import OpenAIChatBackend
from salon.agents.python_backend import PythonPluginBackend
from salon.agents.team import TeamBackend
from salon.config.models import AgentConfig
from salon.config.models import EchoBackend as EchoConfig
from salon.config.models import HttpBackend as HttpConfig
from salon.config.models import OpenAIBackend as OpenAIConfig
from salon.config.models import PythonBackend as PythonConfig
from salon.config.models import TeamBackend as TeamConfig


def build_backend(agent: AgentConfig) -> Backend:
    """The backend object for ``agent``.

    Problems that can be seen before the first turn (a python entry point that
    does not import, an unset ``token_env``) raise ConfigError here, at start-up.
    """
    cfg = agent.backend
    if isinstance(cfg, EchoConfig):
        return EchoBackend(prefix=cfg.prefix, delay_s=cfg.delay_s, fail_on=cfg.fail_on)
    if isinstance(cfg, OpenAIConfig):
        return OpenAIChatBackend(cfg, agent_id=agent.id)
    if isinstance(cfg, HttpConfig):
        return HttpAgentBackend(cfg, agent_id=agent.id)
    if isinstance(cfg, PythonConfig):
        return PythonPluginBackend(cfg, agent_id=agent.id)
    if isinstance(cfg, TeamConfig):
        return TeamBackend(mode=cfg.mode, lead=cfg.lead, members=cfg.members)
    raise AssertionError(f"unhandled backend config {type(cfg).__name__}")  # pragma: no cover


async def close_backend(backend: Backend) -> None:
    """Release a backend's connections, if it holds any (``aclose()``)."""
    closer = getattr(backend, "aclose", None)
    if callable(closer):
        result = closer()
        if inspect.isawaitable(result):
            await result
