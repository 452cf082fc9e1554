"""End-to-end encryption (Olm/Megolm) on vodozemac: one durable device per identity.

Kept behind this package so the library can be swapped: the rest of Salon sees
only :class:`DeviceCrypto` (attached to a :class:`~salon.matrix.api.MatrixAPI`).
"""

from __future__ import annotations

from salon.matrix.crypto.keys import room_encryption_state
from salon.matrix.crypto.machine import CryptoSettings, CryptoSetupError, DeviceCrypto
from salon.matrix.crypto.report import device_reports

__all__ = [
    "CryptoSettings",
    "CryptoSetupError",
    "DeviceCrypto",
    "device_reports",
    "room_encryption_state",
]
