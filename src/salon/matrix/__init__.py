"""Matrix transport: the homeserver as typed inbound events and send operations.

Knows nothing of agents or routing. Layers, bottom up: ``http`` (mautrix's
HTTP layer plus Salon's rate-limit policy) → ``api`` (typed operations, errors
mapped into Salon's tree) → ``sync`` (client-mode event source) → callers.
"""
