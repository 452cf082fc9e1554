"""End-to-end encryption (Olm/Megolm) on vodozemac: one durable device per identity.

Kept behind this package so the library can be swapped: the rest of Salon sees
only :class:`DeviceCrypto` (attached to a :class:`~salon.matrix.api.MatrixAPI`).
"""

from __future__ import annotations

from salon.matrix.crypto.machine import CryptoSettings, CryptoSetupError, DeviceCrypto

__all__ = ["CryptoSettings", "CryptoSetupError", "DeviceCrypto"]
