"""Transaction ids derived from what is being sent, so a re-send is deduplicated.

The homeserver treats a repeated transaction id (per access token) as the same
request and returns the first event: a turn or delegation re-run after a crash
therefore updates the events it already sent instead of posting new ones.
"""

from __future__ import annotations

import hashlib


def txn_id(key: str, actor: str, part: str | int) -> str:
    """A transaction id for ``part`` of what ``actor`` sends about ``key``."""
    digest = hashlib.sha256(f"{key}\x00{actor}\x00{part}".encode()).hexdigest()
    return f"salon.{digest[:40]}"
