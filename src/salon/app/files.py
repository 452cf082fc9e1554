"""How files travel, wired in one place: what people send is fetched for the agents
(``gateway/attachments.py``), big files reach http backends as links the API serves,
and what agents answer with is capped like what they receive."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from salon.agents.attachments import AttachmentWire
from salon.api.attachment_links import AttachmentLinker
from salon.config.models import SalonConfig
from salon.gateway.attachments import AttachmentFetcher
from salon.gateway.messages import MessageHandler
from salon.ids import AgentId
from salon.matrix.api import MatrixAPI
from salon.turns.runner import TurnRunner


def wire_files(
    config: SalonConfig,
    runner: TurnRunner,
    messages: MessageHandler,
    apis: Mapping[AgentId, MatrixAPI],
) -> AttachmentLinker:
    """Set the file paths up; returns the links the API serves."""
    messages.attachments = AttachmentFetcher(
        config.attachments,
        lambda agent_id: runner.agents[agent_id].profile.home,
        apis,
        config.locale,
    )
    links = AttachmentLinker(Path(config.data_dir) / "agents", config.attachments.link_ttl_s)
    inline_max = config.attachments.inline_max_bytes
    runner.wire = AttachmentWire(inline_max, links if config.api is not None else None)
    runner.files.max_bytes = config.attachments.max_bytes  # files agents answer with, too
    return links
