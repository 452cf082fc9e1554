"""Coordination between agents: heartbeats now; delegation and teams later."""
