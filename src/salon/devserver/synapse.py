"""An embedded local Synapse for ``salon up`` and the integration tests.

:func:`write_synapse_config` lays out a throwaway homeserver under
``<data_dir>/synapse`` (SQLite, loopback only, shared-secret registration, rate
limits raised so an agent fleet is never throttled), and :class:`SynapseProcess`
runs it as a child process of the current Python.

Everything Synapse needs lives below the layout's root, with absolute paths in the
config, so the server can be started from any working directory.

The config files are :mod:`salon.devserver.synapse_config`, the process
:mod:`salon.devserver.synapse_process`; this module names what they offer.
"""

from __future__ import annotations

from salon.devserver.synapse_config import (
    SynapseLayout,
    SynapseSettings,
    free_port,
    relaxed_rate_limits,
    write_synapse_config,
)
from salon.devserver.synapse_process import SynapseProcess, running_synapse

__all__ = [
    "SynapseLayout",
    "SynapseProcess",
    "SynapseSettings",
    "free_port",
    "relaxed_rate_limits",
    "running_synapse",
    "write_synapse_config",
]
