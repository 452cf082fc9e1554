"""Agent runtime: personas, backends, turns. Knows nothing of Matrix."""
