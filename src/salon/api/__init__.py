"""The gateway's HTTP surface: admin API, OpenAI-compatible API, metrics and health."""
