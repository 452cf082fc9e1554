"""The composition root: builds the running gateway from its parts.

The only package that knows every layer (the gateway's orchestration, the turn
pipeline, the HTTP surface); `gateway/` and `api/` never import each other.
"""

from salon.app.gateway import Gateway, GatewayState
from salon.app.stopping import on_stop_signals

__all__ = ["Gateway", "GatewayState", "on_stop_signals"]
