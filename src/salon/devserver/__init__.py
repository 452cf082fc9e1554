"""The embedded local homeserver used by ``salon up`` and the integration tests."""

from __future__ import annotations

from salon.devserver.synapse import (
    SynapseLayout,
    SynapseProcess,
    SynapseSettings,
    free_port,
    running_synapse,
    write_synapse_config,
)

__all__ = [
    "SynapseLayout",
    "SynapseProcess",
    "SynapseSettings",
    "free_port",
    "running_synapse",
    "write_synapse_config",
]
