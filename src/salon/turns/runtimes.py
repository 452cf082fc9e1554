"""An agent's runtime as the gateway builds it from config: profile, backend, sessions."""

from __future__ import annotations

from pathlib import Path

from salon.agents.backend import Backend
from salon.agents.profile import AgentProfile
from salon.agents.runtime import AgentRuntime, SessionStore
from salon.config import read_persona
from salon.config.models import BackendConfig, SalonConfig
from salon.ids import AgentId


def make_runtime(
    config: SalonConfig, agent_id: AgentId, backend: Backend, sessions: SessionStore
) -> AgentRuntime:
    """The runtime of ``agent_id`` (its home dir is made if missing, owner only)."""
    agent = config.agents[agent_id]
    profile = AgentProfile(
        agent_id=agent_id,
        label=agent.display_label,
        description=agent.description,
        home=Path(config.data_dir) / "agents" / agent_id,
        config_persona=read_persona(agent),
        context_tokens=agent.context_tokens,
    )
    profile.ensure_home()
    return AgentRuntime(profile, backend, sessions)


def model_name(backend: BackendConfig) -> str:
    """What `!context` calls an agent's model."""
    model = getattr(backend, "model", None)
    return str(model) if model else backend.type
