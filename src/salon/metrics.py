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
SYNC_BACKFILLED = Counter(
    "salon_sync_backfilled_events_total", "Events fetched with /messages to fill sync gaps"
)
SYNC_BACKFILL_CAPPED = Counter(
    "salon_sync_backfill_capped_total", "Sync gaps left partly unfilled at the page cap"
)
INVITES = Counter("salon_invites_total", "Invitation outcomes", ["outcome"])
OUTAGE_WAITS = Counter(
    "salon_outage_waits_total", "Sends retried because the homeserver was unreachable or failing"
)
TURN_DEADLINES = Counter("salon_turn_deadlines_total", "Turns cut off by their deadline", ["agent"])
INBOX_DEFERRED = Counter(
    "salon_inbox_deferred_total", "Inbox events left pending after a transient error"
)
