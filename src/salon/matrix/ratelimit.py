"""Salon's own rate-limit policy (mautrix drops ``retry_after_ms``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to wait out HTTP 429 before giving up."""

    max_retries: int = 8
    max_wait_s: float = 60.0
    default_wait_s: float = 1.0


def parse_retry_after(body: object, header: str | None) -> float | None:
    """Seconds the server asked us to wait, from ``retry_after_ms`` or ``Retry-After``."""
    if isinstance(body, dict):
        ms = body.get("retry_after_ms")
        if isinstance(ms, int | float) and not isinstance(ms, bool) and ms >= 0:
            return float(ms) / 1000.0
    if header:
        try:
            seconds = float(header.strip())
        except ValueError:
            return None  # HTTP-date form: rare from homeservers, use the default
        if seconds >= 0:
            return seconds
    return None


def retry_delay(policy: RetryPolicy, attempt: int, retry_after_s: float | None) -> float | None:
    """The wait before retry number ``attempt`` (1-based), or None when out of retries."""
    if attempt > policy.max_retries:
        return None
    wait = retry_after_s if retry_after_s is not None else policy.default_wait_s * attempt
    return min(wait, policy.max_wait_s)
