"""examples/salon.yaml: the offline demo agents come first and every one of them loads."""

from __future__ import annotations

from pathlib import Path

from salon.agents.python_backend import PythonPluginBackend
from salon.config.loader import load_config
from salon.config.models import OpenAIBackend, PythonBackend, TeamBackend
from salon.demo.concierge import ROLES

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "salon.yaml"


def test_offline_agents_first_and_the_concierge_by_default() -> None:
    config = load_config(EXAMPLE)
    ids = list(config.agents)
    assert ids[:4] == ["concierge", "calculator", "notes", "clock"]  # `!agent 1` is the concierge
    assert config.default_agent == "concierge"
    llm = [a for a, agent in config.agents.items() if isinstance(agent.backend, OpenAIBackend)]
    assert llm == ["assistant"] and ids.index("assistant") > 0


def test_every_python_agent_loads(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    python = {a: c for a, c in config.agents.items() if isinstance(c.backend, PythonBackend)}
    assert set(python) == {"concierge", "calculator", "notes", "clock", "scribe"}
    for agent_id, agent in python.items():
        assert isinstance(agent.backend, PythonBackend)
        backend = PythonPluginBackend(agent.backend, agent_id=agent_id)
        assert backend.plugin.__class__.__module__.startswith("salon.demo.")


def test_the_concierge_may_ask_everyone_it_routes_to() -> None:
    config = load_config(EXAMPLE)
    assert set(config.delegation_targets("concierge")) == set(ROLES)


def test_the_desk_team() -> None:
    config = load_config(EXAMPLE)
    desk = config.agents["desk"].backend
    assert isinstance(desk, TeamBackend)
    assert (desk.mode, desk.lead, desk.members) == (
        "collaborate",
        "concierge",
        ["calculator", "clock"],
    )
