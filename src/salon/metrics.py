"""Prometheus metrics. Exposed over HTTP once the admin API exists."""

from __future__ import annotations

from typing import Any

import prometheus_client


class _CachedLabels:
    """``labels()`` answered from a dict after the first call with those values: the
    library's takes a lock and checks its arguments each time (~3.5 us, against
    ~0.5), and several run per message. Children are never removed here."""

    def labels(self, *values: Any, **kw: Any) -> Any:
        children: dict[Any, Any] | None = self.__dict__.get("_salon_children")
        if children is None:
            children = self.__dict__["_salon_children"] = {}
        key = (values, tuple(kw.items()))
        child = children.get(key)
        if child is None:
            child = children[key] = super().labels(*values, **kw)  # type: ignore[misc]
        return child


class Counter(_CachedLabels, prometheus_client.Counter):
    """A counter whose labelled children are cached."""


class Gauge(_CachedLabels, prometheus_client.Gauge):
    """A gauge whose labelled children are cached."""


class Histogram(_CachedLabels, prometheus_client.Histogram):
    """A histogram whose labelled children are cached."""


EVENTS_DROPPED = Counter(
    "salon_events_dropped_total", "Inbound events dropped before routing", ["reason"]
)
APPSERVICE_SET_ASIDE = Counter(
    "salon_appservice_set_aside_total",
    "Parked appservice transactions set aside after failing too often",
)
EVENTS_ADMITTED = Counter("salon_events_admitted_total", "Inbound events admitted to the inbox")
RATE_LIMIT_WAITS = Counter("salon_rate_limit_waits_total", "Waits caused by HTTP 429")
SYNC_RESTARTS = Counter("salon_sync_restarts_total", "Sync loop restarts", ["identity"])
TURNS = Counter("salon_turns_total", "Finished turns", ["agent", "state"])
LOOPS_RESTARTING = Gauge("salon_loops_restarting", "Supervised loops currently backing off")
SYNC_BACKFILLED = Counter(
    "salon_sync_backfilled_events_total", "Events fetched with /messages to fill sync gaps"
)
SYNC_BACKFILL_PAGES = Counter(
    "salon_sync_backfill_pages_total", "/messages pages read to fill sync gaps (re-reads included)"
)
CATCHUP_ROOMS = Counter(
    "salon_appservice_catchup_rooms_total",
    "Rooms checked for events the homeserver never pushed: current, walked, marked, failed",
    ["outcome"],
)
INVITES = Counter("salon_invites_total", "Invitation outcomes", ["outcome"])
ATTACHMENTS = Counter(
    "salon_attachments_total",
    "Files of media messages: stored, reused (a re-run), too_large, failed",
    ["outcome"],
)
REPLY_FILES = Counter(
    "salon_reply_files_total",
    "Files agents answered with: sent, too_large (not sent), failed (refused by the homeserver)",
    ["agent", "outcome"],
)
OUTAGE_WAITS = Counter(
    "salon_outage_waits_total", "Sends retried because the homeserver was unreachable or failing"
)
TURNS_REFUSED = Counter(
    "salon_turns_refused_total", "Turns refused: too many wait already", ["reason"]
)
TURN_DEADLINES = Counter("salon_turn_deadlines_total", "Turns cut off by their deadline", ["agent"])
OUTAGE_PROBES = Counter(
    "salon_outage_probes_total", "Requests made to learn whether a down homeserver answers again"
)
CLAIM_LOST = Counter(
    "salon_claim_lost_total",
    "Writes refused because another gateway process holds the claim now (a lease ran out)",
    ["what"],
)
INBOX_DEFERRED = Counter(
    "salon_inbox_deferred_total", "Inbox events left pending after a transient error"
)
TURN_SECONDS = Histogram(
    "salon_turn_duration_seconds",
    "Wall-clock time of a turn, from its start to its outcome sent",
    ["agent", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
FIRST_CHUNK_SECONDS = Histogram(
    "salon_turn_first_chunk_seconds",
    "Time from a turn's start to the backend's first chunk",
    ["agent"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REPLIES_SENT = Counter("salon_replies_sent_total", "Reply messages sent (first parts)", ["agent"])
EDITS_SENT = Counter("salon_edits_sent_total", "Reply edits sent (m.replace)", ["agent"])
BACKEND_ERRORS = Counter(
    "salon_backend_errors_total", "Turns a backend failed, by kind of failure", ["agent", "kind"]
)
SYNC_LAG = Gauge(
    "salon_sync_lag_seconds",
    "Age of the newest event of an identity's last sync batch when it arrived",
    ["identity"],
)
INBOX_DEPTH = Gauge("salon_inbox_depth", "Inbox events not yet handled (set when scraped)")
DELEGATIONS_OPEN = Gauge(
    "salon_delegations_open", "Delegations not yet ended, by state (set when scraped)", ["state"]
)
DELEGATIONS_REJECTED = Counter(
    "salon_delegations_rejected_total",
    "Delegation requests to our agents answered `rejected`, by why",
    ["reason"],
)
VISITS_ENDED = Counter(
    "salon_visits_ended_total", "Agents leaving other agents' rooms they visited", ["reason"]
)
WARM_DRIFT = Counter(
    "salon_warm_start_drift_total",
    "Agents a warm start took from the store, found out of their room or the lobby, repaired",
    ["kind"],
)
CONFIG_RELOADS = Counter(
    "salon_config_reloads_total", "Config reloads, applied or refused", ["result"]
)
RETENTION_PRUNED = Counter(
    "salon_retention_pruned_total", "Rows the retention janitor deleted", ["table"]
)
DECRYPTION_FAILURES = Counter(
    "salon_decryption_failures_total",
    "Encrypted events given up on (key never arrived, bad ciphertext…), by identity",
    ["identity", "reason"],
)
UNDECRYPTABLE_WAITING = Gauge(
    "salon_undecryptable_waiting", "Encrypted events waiting for their room key", ["identity"]
)
ONE_TIME_KEYS = Gauge(
    "salon_one_time_keys", "One-time keys the homeserver holds for a device", ["identity"]
)
CRYPTO_UNAVAILABLE = Gauge(
    "salon_crypto_unavailable",
    "1 when an identity has no encryption device (the homeserver would not make one)",
    ["identity"],
)
TOOL_CALLS = Counter(
    "salon_tool_calls_total",
    "Tool calls of turns: ok, error, timeout, unavailable, reused (a re-run), refused, unknown",
    ["server", "tool", "outcome"],
)
TOOL_CALL_SECONDS = Histogram(
    "salon_tool_call_duration_seconds",
    "Wall-clock time of a tool call, from dispatch to result",
    ["server", "tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
MCP_SERVER_RESTARTS = Counter(
    "salon_mcp_server_restarts_total", "MCP server (re)connections after a failure", ["server"]
)
APPROVALS = Counter(
    "salon_approvals_total",
    "Tool calls asked of a person: requested, approved, denied, timeout; and answers"
    " ignored (not the person the turn works for, nor an admin)",
    ["outcome"],
)
