"""Each identity's device as `salon status` and ``/api/v1/status`` show it."""

from __future__ import annotations

from collections.abc import Iterable

from salon.matrix.api import MatrixAPI
from salon.matrix.crypto.keys import JSON
from salon.matrix.crypto.machine import DeviceCrypto


def device_reports(apis: Iterable[MatrixAPI]) -> list[JSON]:
    """One row per identity with an encryption device: its device id, the one-time
    keys the homeserver holds for it, the events waiting for a room key, and the
    encrypted events given up on since start (sorted by identity, each once)."""
    rows: dict[str, JSON] = {}
    for api in apis:
        crypto = api.crypto
        if isinstance(crypto, DeviceCrypto):
            rows[crypto.me.user_id] = crypto.report()
    return [rows[k] for k in sorted(rows)]
