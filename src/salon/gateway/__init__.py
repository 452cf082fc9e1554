"""The orchestrator: boot, supervision, dispatch, shutdown."""
