"""Prometheus metrics. Exposed over HTTP once the admin API exists."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_DROPPED = Counter(
    "salon_events_dropped_total", "Inbound events dropped before routing", ["reason"]
)
EVENTS_ADMITTED = Counter("salon_events_admitted_total", "Inbound events admitted to the inbox")
RATE_LIMIT_WAITS = Counter("salon_rate_limit_waits_total", "Waits caused by HTTP 429")
SYNC_RESTARTS = Counter("salon_sync_restarts_total", "Sync loop restarts", ["identity"])
TURNS = Counter("salon_turns_total", "Finished turns", ["agent", "state"])
LOOPS_RESTARTING = Gauge("salon_loops_restarting", "Supervised loops currently backing off")
