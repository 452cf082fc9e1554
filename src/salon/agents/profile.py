"""An agent's profile: identity-free facts and its home dir with ``SOUL.md`` and
``skills/``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from salon.agents.skills import SkillSet
from salon.ids import AgentId

SOUL = "SOUL.md"


@dataclass(frozen=True)
class AgentProfile:
    """Who an agent is, for the runtime, plugins and tools."""

    agent_id: AgentId
    label: str
    description: str
    home: Path
    config_persona: str | None = None
    context_tokens: int = 8000
    skill_set: SkillSet = field(default_factory=SkillSet, compare=False, repr=False)

    def persona(self) -> str | None:
        """The system prompt: the persona (:meth:`soul`), then the agent's skills
        (``<home>/skills/*.md`` in name order, see :mod:`salon.agents.skills`).

        Read on every turn so an edited SOUL.md or skill takes effect without a restart.
        """
        parts = [p for p in (self.soul(), self.skill_set.prompt(self.home)) if p]
        return "\n\n".join(parts) or None

    def soul(self) -> str | None:
        """The persona alone: ``<home>/SOUL.md`` if present, else the config's persona."""
        soul = self.home / SOUL
        try:
            text = soul.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        return text or self.config_persona

    def ensure_home(self) -> None:
        """Create the home dir (the agent's own files live here), owner-only (0700)."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)  # mkdir's mode is masked by umask; an old dir kept its own
